"""A page's Markdown from its ordered blocks, one format per label (as PaddleX's result_v2 writes it).

Titles become headings (the document's title ``#``, a section ``##`` plus
one ``#`` per level of its numbering), running text its paragraphs, tables
their HTML, pictures (images, charts, seals, formulas no model read) an
``<img>`` of their crop under ``imgs/``, carried in ``markdown.images``.
Labels in ``markdownIgnoreLabels`` (by default what sits in the margins) are
left out. ``isStart``/``isEnd`` say whether the page's first block starts a
paragraph and its last one ends it, so that a document's pages can be joined
(shared/markdown_document.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from pxserve.workers.structure.blocks import CAPTIONS, PARAGRAPHS, PICTURES, Block, join_rows, title_level

DEFAULT_IGNORED = ("number", "footnote", "header", "header_image", "footer", "footer_image", "aside_text")
TITLES = frozenset({"doc_title", "paragraph_title"})
_CENTRED = '<div style="text-align: center;">{}</div>'


@dataclass(frozen=True)
class MarkdownOptions:
    ignore: frozenset[str] = frozenset(DEFAULT_IGNORED)
    prettify: bool = True
    show_formula_number: bool = False


def image_path(block: Block) -> str:
    """Where a block's picture goes: PaddleX's name, from its label and box."""
    x0, y0, x1, y1 = (int(v) for v in block.box)
    return f"imgs/img_in_{block.label}_box_{x0}_{y0}_{x1}_{y1}.jpg"


def page_markdown(blocks: list[Block], page_width: int, options: MarkdownOptions) -> tuple[str, bool, bool]:
    """(text, isStart, isEnd) of a page whose blocks are in reading order."""
    shown = [b for b in blocks if b.label not in options.ignore and _shows(b, options)]
    text = ""
    previous: Block | None = None
    for block in shown:
        part = _format(block, page_width, options)
        if not part:
            continue
        if previous is not None and _continues(previous, block):
            text = join_rows([text, part])  # a paragraph carried on in the next column
        else:
            text = f"{text}\n\n{part}" if text else part
        previous = block
    if not shown:
        return text, True, True
    first, last = shown[0], shown[-1]
    starts = first.label not in PARAGRAPHS or first.indented
    ends = last.label not in PARAGRAPHS or not last.runs_on
    return text, starts, ends


def _continues(previous: Block, block: Block) -> bool:
    """Whether ``block`` carries on the paragraph ``previous`` left unfinished (a column break)."""
    return (
        previous.label in PARAGRAPHS and block.label in PARAGRAPHS and previous.runs_on and not block.indented
    )


def _shows(block: Block, options: MarkdownOptions) -> bool:
    return block.label != "formula_number" or options.show_formula_number


def block_markdown(block: Block, page_width: int, options: MarkdownOptions) -> str:
    """One block as Markdown (``formatBlockContent`` puts this in its block_content)."""
    return _format(block, page_width, options)


def _format(block: Block, page_width: int, options: MarkdownOptions) -> str:
    label = block.label
    if label in TITLES:
        return f"{'#' * title_level(block)} {block.content}"
    if label == "table" and block.content:
        html = block.content.replace("<table>", '<table border="1">') if options.prettify else block.content
        return _CENTRED.format(html) if options.prettify else html
    if (label in PICTURES or label == "table") and block.image:
        if options.prettify:
            share = int(100 * block.width / max(page_width, 1))  # PaddleX truncates
            return _CENTRED.format(f'<img src="{block.image}" alt="Image" width="{share}%" />')
        return f'<img src="{block.image}" alt="Image" />'
    if label in CAPTIONS:
        return _CENTRED.format(block.content) if options.prettify else block.content
    if label in PARAGRAPHS:
        return "\n\n".join(block.paragraphs)
    return block.content
