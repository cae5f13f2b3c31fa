"""A page as a Word file: PaddleX 3.7's ``outputFormats: ["docx"]``, written with python-docx.

The same blocks, in the same order and with the same labels left out, as the
page's Markdown (markdown.py): titles become Word headings (the document's
title the Title style, a section Heading 1 + its numbering's depth), running
text its paragraphs, tables real Word tables (``rowspan``/``colspan`` merged),
pictures the crops ``markdown.images`` carries, captions centred. One file per
page, as PaddleX answers, so a 300-page document never holds more than one
page's file in a worker.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser

from pxserve.workers.structure.blocks import CAPTIONS, PARAGRAPHS, PICTURES, Block, title_level
from pxserve.workers.structure.markdown import TITLES, MarkdownOptions

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MAX_SPAN = 50  # SLANet_plus writes spans up to 20; more is not a table this server read
TEXT_WIDTH_IN = 6.0  # the default section's text width (Letter, 1.25 in margins)
# Characters XML 1.0 cannot hold (python-docx refuses them): OCR of noise may produce them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def page_docx(
    blocks: list[Block], pictures: dict[int, str], page_width: int, options: MarkdownOptions
) -> bytes:
    """The .docx bytes of a page whose blocks are in reading order; ``pictures``: layout box
    index -> Base64 JPEG of the crop (a picture without one is left out)."""
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH

    document = Document()
    for block in blocks:
        if block.label in options.ignore or (
            block.label == "formula_number" and not options.show_formula_number
        ):
            continue
        label = block.label
        if label in TITLES:
            level = 0 if label == "doc_title" else min(9, title_level(block) - 1)
            document.add_heading(_clean(block.content), level=level)
        elif label == "table" and block.content:
            _add_table(document, block.content)
        elif label in PICTURES or label == "table":
            picture = pictures.get(block.source)
            if picture:
                share = min(1.0, block.width / max(page_width, 1))
                _add_picture(document, picture, max(0.5, TEXT_WIDTH_IN * share))
        elif label in CAPTIONS:
            document.add_paragraph(_clean(block.content)).alignment = WD_ALIGN_PARAGRAPH.CENTER
        elif label in PARAGRAPHS:
            for paragraph in block.paragraphs or [block.content]:
                if paragraph.strip():
                    document.add_paragraph(_clean(paragraph))
        elif block.content.strip():
            document.add_paragraph(_clean(block.content))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _add_picture(document, b64: str, width_in: float) -> None:  # document: docx.Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Inches

    try:
        document.add_picture(io.BytesIO(base64.b64decode(b64)), width=Inches(width_in))
    except Exception:  # python-docx cannot read this JPEG's header: leave the picture out
        return
    document.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER


@dataclass
class _Cell:
    text: str = ""
    rows: int = 1
    cols: int = 1


class _TableReader(HTMLParser):
    """The cells of an HTML table (as SLANet_plus writes it), row by row."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[_Cell]] = []
        self._cell: _Cell | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            if not self.rows:
                self.rows.append([])
            spans = {name: _span(value) for name, value in attrs if name in ("rowspan", "colspan")}
            self._cell = _Cell(rows=spans.get("rowspan", 1), cols=spans.get("colspan", 1))
            self.rows[-1].append(self._cell)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data


def _span(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), MAX_SPAN))
    except ValueError:
        return 1


def _add_table(document, html: str) -> None:  # document: docx.Document
    """An HTML table as a Word table: each cell at the first free grid position of its row,
    ``rowspan``/``colspan`` merged."""
    reader = _TableReader()
    reader.feed(html)
    placed: list[tuple[int, int, _Cell]] = []
    taken: set[tuple[int, int]] = set()
    for r, row in enumerate(reader.rows):
        c = 0
        for cell in row:
            while (r, c) in taken:
                c += 1
            placed.append((r, c, cell))
            taken.update((r + dr, c + dc) for dr in range(cell.rows) for dc in range(cell.cols))
            c += cell.cols
    if not placed:
        return
    height = max(r for r, _ in taken) + 1
    width = max(c for _, c in taken) + 1
    table = document.add_table(rows=height, cols=width)
    table.style = "Table Grid"
    for r, c, cell in placed:
        target = table.cell(r, c)
        if cell.rows > 1 or cell.cols > 1:
            corner = table.cell(min(height, r + cell.rows) - 1, min(width, c + cell.cols) - 1)
            with contextlib.suppress(Exception):  # spans overlapping another merge: left unmerged
                target = target.merge(corner)
        target.text = _clean(cell.text.strip())
