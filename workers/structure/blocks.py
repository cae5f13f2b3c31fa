"""A page's blocks: the layout model's regions, given their labels and their text.

The layout model finds regions; the page's OCR finds lines. Each line goes
to the region that holds most of it; a table, image, formula or seal region
keeps its lines out of the text (a table's cells are filled from them
elsewhere), and lines no region holds become text blocks of their own (nearby
lines grouped), as PaddleX does. A text block's lines are put in rows, and
rows into paragraphs by their geometry: a row that stops well short of the
block's right edge ends a paragraph, an indented row starts one.

The embedded layout model knows CDLA's ten classes; :func:`from_layout`
gives its boxes PP-StructureV3's labels (the mapping is in the README) and
tells apart, by position and text, what CDLA has one class for: the
document's title from section titles, footnotes from references, page
numbers, equation numbers and captions it did not box.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from pxserve.shared.markdown_document import is_wide

# CDLA's classes as PP-StructureV3's labels. CDLA's "title" is any title; "reference" any small print.
CDLA_LABELS = {
    "text": "text",
    "title": "paragraph_title",
    "figure": "image",
    "figure_caption": "figure_title",
    "table": "table",
    "table_caption": "table_title",
    "header": "header",
    "footer": "footer",
    "reference": "reference",
    "equation": "formula",
}
# Regions whose lines are not text: read by their own model, or pictures. (A formula keeps its
# lines as its content, as PaddleX does with no formula model, but is shown as a picture.)
VISUAL = frozenset({"table", "image", "chart", "seal", "header_image", "footer_image"})
PICTURES = frozenset({"image", "chart", "formula", "seal", "header_image", "footer_image"})
CAPTIONS = frozenset({"figure_title", "table_title", "chart_title", "figure_table_chart_title"})
# Text whose rows become paragraphs (titles and captions are one line of text).
PARAGRAPHS = frozenset(
    {"text", "abstract", "content", "reference", "reference_content", "footnote", "aside_text", "algorithm"}
)
# Read apart from the body: they sit in the page's margins, or (UNORDERED) beside the text.
MARGINS = frozenset({"header", "header_image", "footer", "footer_image", "footnote"})
UNORDERED = frozenset({"aside_text", "seal", "number", "formula_number"})
# The labels that get a block_order (PaddleX's visualize_index_labels), unless left out of Markdown.
NUMBERED = frozenset(
    {"text", "formula", "algorithm", "reference", "content", "abstract", "paragraph_title", "doc_title",
     "abstract_title", "refer_title", "content_title", "number", "footnote", "header", "header_image",
     "footer", "footer_image", "aside_text"}
)  # fmt: skip

_CAPTION_TEXT = re.compile(r"^\s*(table|tab\.|figure|fig\.|chart|表|图|圖)\s*[\dIVX]", re.IGNORECASE)
_NUMBER_ONLY = re.compile(r"^\s*[-\u2013(]?\s*\d{1,4}\s*[-\u2013)]?\s*$")  # "3", "- 3 -", "(3)"
_CAPTION_LABELS = {"tab": "table_title", "表": "table_title", "cha": "chart_title"}
_GLUED_NUMBER = re.compile(r"^(\d+(?:\.\d+)*\.?)(?=[^\W\d_])")
_EQUATION_NUMBER = re.compile(r"^\s*\(\s*[\d.]+[a-z]?\s*\)\s*$")


Box = tuple[float, float, float, float]


@dataclass
class Line:
    box: Box
    text: str
    words: list[tuple[str, Box]] = field(default_factory=list)  # each word and its box, when known
    size: float = 0.0  # font size in points, when the PDF's own text says (workers/pdf_text.py)
    bold: list[bool] = field(default_factory=list)  # per word, likewise

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass
class Row:
    lines: list[Line]

    @property
    def box(self) -> tuple[float, float, float, float]:
        return union([line.box for line in self.lines])

    @property
    def text(self) -> str:
        return join_words([line.text for line in sorted(self.lines, key=lambda line: line.box[0])])


@dataclass
class Block:
    label: str
    box: list[float]  # [x0, y0, x1, y1]
    score: float = 1.0
    lines: list[Line] = field(default_factory=list)
    content: str = ""
    paragraphs: list[str] = field(default_factory=list)
    order: int | None = None
    group: int = 0
    indented: bool = True  # its first row starts a paragraph (page continuation flags)
    runs_on: bool = False  # its last row runs to the right edge: the paragraph may go on
    image: str = ""  # relative path of its picture, for PICTURES
    source: int = -1  # its index in the layout's boxes (-1: made from lines no region held)
    level: int = 0  # a title's heading level from its font (0: from its numbering, title_level)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def from_layout(
    layout: dict[str, Any], ocr: dict[str, Any], size: tuple[int, int], titles: dict[int, str] | None = None
) -> list[Block]:
    """The page's blocks, with their labels and text, not yet in reading order. ``titles``: the
    title regions read again whole (layout box index -> text), for what detection missed."""
    height, width = size
    cdla = bool(layout["boxes"]) and all(box["label"] in CDLA_LABELS for box in layout["boxes"])
    blocks = [
        Block(pp_label(box["label"]), [float(v) for v in box["coordinate"]], float(box.get("score", 1.0)),
              source=index)
        for index, box in enumerate(layout["boxes"])
    ]  # fmt: skip
    words = ocr.get("text_word") or []
    regions = ocr.get("text_word_region") or []
    fonts = ocr.get("text_layer_fonts") or []
    lines = []
    for i, (box, text) in enumerate(
        zip(ocr.get("rec_boxes") or [], ocr.get("rec_texts") or [], strict=False)
    ):
        if not str(text).strip():
            continue
        boxed = [
            (str(word), _quad_box(quad))
            for word, quad in zip(words[i] if i < len(words) else [], regions[i] if i < len(regions) else [],
                                  strict=False)
        ]  # fmt: skip
        line = Line(tuple(float(v) for v in box), str(text), boxed)  # type: ignore[arg-type]
        if i < len(fonts):
            line.size, line.bold = float(fonts[i][0]), [bool(b) for b in fonts[i][1]]
        lines += _split_across(line, blocks)
    orphans = _assign(lines, blocks)
    for group in _group(orphans):
        blocks.append(Block("text", list(union([line.box for line in group])), 0.0, group))
    for block in blocks:
        _read(block)
        if block.source in (titles or {}):
            _prefer_whole(block, (titles or {})[block.source])
    if cdla:
        _tell_apart(blocks, width, height)
    return [b for b in blocks if b.label in VISUAL or b.label in PICTURES or b.content or b.label in CAPTIONS]


def pp_label(label: str) -> str:
    """A layout label as PP-StructureV3's: CDLA's names mapped (the names they share mean the same)."""
    return CDLA_LABELS.get(label, label)


def _split_across(line: Line, blocks: list[Block]) -> list[Line]:
    """A line the detector ran across two text regions (over a narrow gap between columns),
    cut where its words change region; a line within one region stays whole."""
    area = max(1.0, (line.box[2] - line.box[0]) * (line.box[3] - line.box[1]))
    holders = [b for b in blocks if b.label not in VISUAL and overlap(line.box, b.box) > 0.1 * area]
    if len(holders) < 2 or len(line.words) < 2:
        return [line]
    pieces: list[tuple[Block | None, list[tuple[str, Box]]]] = []
    for word, box in line.words:
        owner: Block | None = max(holders, key=lambda b: overlap(box, b.box))
        if owner is not None and overlap(box, owner.box) <= 0:
            owner = pieces[-1][0] if pieces else None
        if pieces and pieces[-1][0] is owner:
            pieces[-1][1].append((word, box))
        else:
            pieces.append((owner, [(word, box)]))
    if len(pieces) < 2:
        return [line]
    return [
        Line(union([box for _, box in words]), join_words([w for w, _ in words]), words, line.size)
        for _, words in pieces
    ]


def _quad_box(quad: Any) -> Box:
    xs, ys = [float(p[0]) for p in quad], [float(p[1]) for p in quad]
    return (min(xs), min(ys), max(xs), max(ys))


def _assign(lines: list[Line], blocks: list[Block]) -> list[Line]:
    """Each line to the block that holds most of it (at least half); the rest are returned."""
    orphans = []
    for line in lines:
        area = max(1.0, (line.box[2] - line.box[0]) * (line.box[3] - line.box[1]))
        best, share = None, 0.5
        for block in blocks:
            covered = overlap(line.box, block.box) / area
            # A text block wins a tie with a picture it sits on (a caption boxed inside a figure).
            if covered > share or (covered == share and best is not None and best.label in VISUAL):
                best, share = block, covered
        if best is None:
            orphans.append(line)
        elif best.label not in VISUAL:
            best.lines.append(line)
    return orphans


def _group(lines: list[Line]) -> list[list[Line]]:
    """Lines that no region holds, grouped where they sit one under another (a paragraph)."""
    groups: list[list[Line]] = []
    for line in sorted(lines, key=lambda line: (line.box[1], line.box[0])):
        for group in groups:
            box = union([member.box for member in group])
            gap = line.box[1] - box[3]
            across = min(box[2], line.box[2]) - max(box[0], line.box[0])
            if -line.height / 2 <= gap <= line.height and across > 0.5 * min(
                box[2] - box[0], line.box[2] - line.box[0]
            ):
                group.append(line)
                break
        else:
            groups.append([line])
    return groups


def rows_of(lines: list[Line]) -> list[Row]:
    """Lines in rows, top to bottom (a row: lines that share most of their height)."""
    rows: list[Row] = []
    for line in sorted(lines, key=lambda line: (line.box[1] + line.box[3]) / 2):
        if rows:
            last = rows[-1].box
            shared = min(last[3], line.box[3]) - max(last[1], line.box[1])
            if shared > 0.5 * min(line.height, last[3] - last[1]):
                rows[-1].lines.append(line)
                continue
        rows.append(Row([line]))
    return rows


def _read(block: Block) -> None:
    """The block's text: its rows, and for running text its paragraphs."""
    if block.label in VISUAL or not block.lines:
        return
    rows = rows_of(block.lines)
    if block.label not in PARAGRAPHS:
        block.content = join_words([row.text for row in rows])
        if block.label == "paragraph_title":  # "4Discussion": a number read onto its word
            block.content = _GLUED_NUMBER.sub(r"\1 ", block.content)
        block.paragraphs = [block.content]
        return
    row_height = median(row.box[3] - row.box[1] for row in rows)
    starts, ends = [row.box[0] for row in rows], [row.box[2] for row in rows]
    # Where rows start and full rows end: most rows of running text do both, so their
    # medians (a block of one or two rows: the region's edges).
    left = median(starts) if len(rows) >= 3 else min(block.box[0], *starts)
    right = median(ends) if len(rows) >= 3 else max(block.box[2], *ends)
    paragraphs: list[list[str]] = [[rows[0].text]]
    for previous, row in itertools.pairwise(rows):
        short = previous.box[2] < right - 1.5 * row_height
        indented = row.box[0] > left + 0.8 * row_height
        if short or indented:
            paragraphs.append([])
        paragraphs[-1].append(row.text)
    block.paragraphs = [join_rows(p) for p in paragraphs]
    block.content = "\n".join(block.paragraphs)
    block.indented = rows[0].box[0] > left + 0.8 * row_height
    block.runs_on = len(rows) > 1 and rows[-1].box[2] >= right - 1.5 * row_height


def _prefer_whole(block: Block, whole: str) -> None:
    """A title read whole, where its lines missed part of it (a section number the detector
    left out: "Discussion" for "4 Discussion")."""
    found, whole = block.content, whole.strip()
    squeezed = re.sub(r"\s+", "", found)
    if whole and len(re.sub(r"\s+", "", whole)) > len(squeezed) and squeezed in re.sub(r"\s+", "", whole):
        block.content = _GLUED_NUMBER.sub(r"\1 ", whole)
        block.paragraphs = [block.content]


def _tell_apart(blocks: list[Block], width: int, height: int) -> None:
    """What CDLA gives one class for, told apart by where a block is and what it says."""
    titles = [b for b in blocks if b.label == "paragraph_title"]
    body = [b for b in blocks if b.label not in ("header", "footer")]
    for block in titles:
        centred = abs((block.box[0] + block.box[2]) / 2 - width / 2) < 0.05 * width
        others = [t.height for t in titles if t is not block]
        large = not others or block.height >= 1.3 * median(others)
        topmost = all(block.box[1] <= b.box[1] for b in body)
        if centred and large and topmost and not _numbered(block.content):
            block.label = "doc_title"
    for block in blocks:
        if block.label == "reference" and block.box[1] > 0.8 * height:
            block.label = "footnote"  # small print at the foot of the page
        elif (
            block.label == "text"
            and _NUMBER_ONLY.match(block.content)
            and (block.box[1] > 0.9 * height or block.box[3] < 0.1 * height)
        ):
            block.label = "number"  # a page number
        elif (
            block.label == "text"
            and _EQUATION_NUMBER.match(block.content)
            and any(b.label == "formula" and _same_row(b.box, block.box) for b in blocks)
        ):
            block.label = "formula_number"
        caption = _CAPTION_TEXT.match(block.content) if block.label == "text" else None
        if (
            caption
            and len(block.paragraphs) == 1
            and any(b.label in ("table", "image", "chart") and _next_to(b.box, block.box) for b in blocks)
        ):
            block.label = _CAPTION_LABELS.get(caption.group(1).lower()[:3], "figure_title")


def title_level(block: Block) -> int:
    """Markdown heading level: 1 for the document's title, 2 + depth of a section's numbering,
    else the level its font gave it (:func:`levels_from_fonts`), else 2."""
    if block.label == "doc_title":
        return 1
    if block.level and not _numbered(block.content):
        return block.level
    match = _numbered(block.content)
    return min(6, 1 + match.group(1).count(".") + 1) if match else 2


def _numbered(text: str) -> re.Match[str] | None:
    return re.match(r"^\s*(\d+(?:\.\d+)*)\.?\s+\S", text)


def join_words(parts: list[str]) -> str:
    """Pieces of one row of text: a space between words, none between CJK characters."""
    text = ""
    for part in (p.strip() for p in parts):
        if not part:
            continue
        text = f"{text}{'' if not text or (is_wide(text[-1]) and is_wide(part[0])) else ' '}{part}"
    return text


def join_rows(rows: list[str]) -> str:
    """Rows of one paragraph: a word hyphenated at a row's end is put back together."""
    text = ""
    for row in (r.strip() for r in rows):
        if not row:
            continue
        if text.endswith("-") and len(text) > 1 and text[-2].isalpha() and row[:1].islower():
            text = text[:-1] + row
        else:
            text = join_words([text, row])
    return text


def union(boxes: list[Box] | list[list[float]]) -> Box:
    """The smallest box holding all of ``boxes``."""
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def overlap(a: Any, b: Any) -> float:
    """The area two [x0, y0, x1, y1] boxes share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _same_row(a: list[float], b: list[float]) -> bool:
    return min(a[3], b[3]) - max(a[1], b[1]) > 0.3 * min(a[3] - a[1], b[3] - b[1])


def _next_to(picture: list[float], caption: list[float]) -> bool:
    """The caption sits just above or below the picture, across part of its width."""
    across = min(picture[2], caption[2]) - max(picture[0], caption[0])
    gap = max(caption[1] - picture[3], picture[1] - caption[3])
    return across > 0 and gap < 3 * (caption[3] - caption[1])


# A title set this much larger than the page's running text is the document's title (#), this
# much a section (##), this much a subsection (###); as large (bold) a level below. Ratios, so that
# every page of a document gets the same levels whatever else it holds (LaTeX: 1.58, 1.31, 1.10).
TITLE_RATIO, SECTION_RATIO, SUBSECTION_RATIO = 1.5, 1.25, 1.06
MAX_RUN_IN_WORDS = 8


def levels_from_fonts(blocks: list[Block]) -> dict[int, list[Block]]:
    """Where the PDF's own text gave font sizes: each title's heading level from its size
    against the running text's, and a bold run-in heading at the start of a paragraph
    ("**Scope** This document ...") made a title of its own. Returns, by the ``id`` of each text
    block that had one, the blocks that replace it (:func:`place_run_in_titles`)."""
    running = [line for block in blocks if block.label == "text" for line in block.lines if line.size]
    body = [line.size for line in running for _ in line.text]  # each character counts once
    if not body:
        return {}
    body_size = median(body)
    levels = []
    for block in blocks:
        sizes = [line.size for line in block.lines if line.size]
        if block.label == "paragraph_title" and sizes:
            ratio = max(sizes) / body_size
            block.level = next(
                (level for level, least in enumerate((TITLE_RATIO, SECTION_RATIO, SUBSECTION_RATIO), 1)
                 if ratio >= least),
                4,
            )  # fmt: skip
            levels.append(block.level)
    run_in_level = min(6, max([2, *levels]) + 1)
    replaced: dict[int, list[Block]] = {}
    for block in blocks:
        if block.label == "text" and block.lines and len(block.paragraphs) >= 1:
            pieces = _split_run_in(block, run_in_level)
            if len(pieces) > 1:
                replaced[id(block)] = pieces
    return replaced


def _run_in(row: Row) -> tuple[str, Box] | None:
    """The bold heading a row starts with, and its box: bold words, then plain ones on the same
    line. (A whole bold line is not taken for a heading: an author's name, a term set in bold.)"""
    first = min(row.lines, key=lambda line: line.box[0])
    bold = first.bold[: len(first.words)]
    count = next((i for i, b in enumerate(bold) if not b), len(bold))
    if not 0 < count <= MAX_RUN_IN_WORDS or count == len(bold):
        return None
    words = first.words[:count]
    return join_words([word for word, _ in words]), union([box for _, box in words])


def _split_run_in(block: Block, level: int) -> list[Block]:
    """``block`` cut at each paragraph that starts with a run-in heading: the text before, the
    heading (a title), the text from there on."""
    rows = rows_of(block.lines)
    pieces: list[Block] = []
    paragraphs = list(block.paragraphs)
    current: list[str] = []
    for row in rows:
        found = _run_in(row)
        start = row.text[:24].replace(" ", "")
        number = next(
            (i for i, p in enumerate(paragraphs) if p.replace(" ", "").startswith(start)), None
        ) if found and start else None  # fmt: skip
        if found is None or number is None:
            continue
        heading, box = found
        rest = _without_prefix(paragraphs[number], heading)
        if rest is None:
            continue
        current += paragraphs[:number]
        if current:
            pieces.append(_piece(block, current, indented=not pieces))
        pieces.append(Block("paragraph_title", list(box), 1.0, content=heading, paragraphs=[heading],
                            group=block.group, level=level))  # fmt: skip
        current = [rest] if rest else []
        paragraphs = paragraphs[number + 1 :]
    if not pieces:
        return [block]
    current += paragraphs
    if current:
        pieces.append(_piece(block, current, runs_on=block.runs_on))
    return pieces


def _piece(block: Block, paragraphs: list[str], indented: bool = True, runs_on: bool = False) -> Block:
    """Part of a text block cut at a run-in heading: these paragraphs, in its place."""
    return Block(
        "text", block.box, block.score, content="\n".join(paragraphs), paragraphs=paragraphs,
        group=block.group, source=block.source, indented=indented, runs_on=runs_on,
    )  # fmt: skip


def _without_prefix(paragraph: str, heading: str) -> str | None:
    """``paragraph`` without ``heading`` at its start (spaces aside), or None if it does not start so."""
    squeezed = re.sub(r"\s+", "", heading)
    taken = 0
    for position, char in enumerate(paragraph):
        if taken == len(squeezed):
            return paragraph[position:].strip()
        if char.isspace():
            continue
        if char != squeezed[taken]:
            return None
        taken += 1
    return "" if taken == len(squeezed) else None


def place_run_in_titles(ordered: list[Block], replaced: dict[int, list[Block]]) -> list[Block]:
    """Each text block that had run-in headings replaced by its pieces, in its place."""
    if not replaced:
        return ordered
    placed: list[Block] = []
    for block in ordered:
        placed += replaced.get(id(block), [block])
    return placed
