"""PP-StructureV3's page logic on boxes whose answer is known: labels, paragraphs, reading
order across columns, Markdown and its page flags, and whole documents joined from pages.

No model runs here: the layout boxes and OCR lines are written by hand, as a typeset page
would give them (the real models are exercised in tests/test_structure.py)."""

from __future__ import annotations

import io
import time
import zipfile

import pybase64

from pxserve.shared.markdown_document import MarkdownDocument, MarkdownZip, join_pages
from pxserve.workers.layout import refine
from pxserve.workers.structure.blocks import Block, from_layout, join_rows
from pxserve.workers.structure.markdown import DEFAULT_IGNORED, MarkdownOptions, page_markdown
from pxserve.workers.structure.reading_order import reading_order

PAGE = (1754, 1240)  # height, width: A4 at 150 dpi


def box(label: str, x0: float, y0: float, x1: float, y1: float, score: float = 0.9) -> dict:
    return {"cls_id": 0, "label": label, "score": score, "coordinate": [x0, y0, x1, y1]}


def lines_in(
    x0: float, y0: float, x1: float, texts: list[str], height: float = 24, indent: float = 0
) -> list:
    """OCR lines filling a column from (x0, y0): the first indented by ``indent``, the last short."""
    found = []
    for i, text in enumerate(texts):
        left = x0 + (indent if i == 0 else 0)
        right = x1 if i < len(texts) - 1 else x0 + (x1 - x0) * 0.4
        top = y0 + i * (height + 6)
        found.append(([left, top, right, top + height], text))
    return found


def ocr(*groups: list) -> dict:
    pairs = [pair for group in groups for pair in group]
    return {"rec_boxes": [b for b, _ in pairs], "rec_texts": [t for _, t in pairs]}


def labels_in_order(blocks: list[Block]) -> list[tuple[str, str]]:
    return [(b.label, b.content.split("\n")[0][:12]) for b in reading_order(blocks)]


def test_two_columns_under_a_title_read_column_by_column() -> None:
    """A centred title and author over two columns whose paragraph gaps line up, so that a
    plain XY-cut would read them row by row across the columns."""
    layout = {
        "boxes": [
            box("title", 300, 150, 940, 190),
            box("text", 520, 220, 720, 245),  # author, centred across the gutter
            box("title", 130, 300, 360, 325),
            box("text", 130, 340, 610, 460),
            box("text", 130, 500, 610, 620),
            box("text", 630, 300, 1110, 460),
            box("text", 630, 500, 1110, 620),
        ]
    }
    words = ocr(
        [([310, 155, 930, 185], "A Title Over Both")],
        [([530, 222, 710, 243], "Field Notes")],
        [([132, 302, 350, 323], "1 Introduction")],
        lines_in(130, 340, 610, ["Left one starts", "and goes on", "to its end."], indent=20),
        lines_in(130, 500, 610, ["Left two starts", "and goes on", "to its end."], indent=20),
        lines_in(630, 300, 1110, ["Right one starts", "and goes on", "to its end."], indent=20),
        lines_in(630, 500, 1110, ["Right two starts", "and goes on", "to its end."], indent=20),
    )
    blocks = from_layout(layout, words, PAGE)
    assert labels_in_order(blocks) == [
        ("doc_title", "A Title Over"),
        ("text", "Field Notes"),
        ("paragraph_title", "1 Introducti"),
        ("text", "Left one sta"),
        ("text", "Left two sta"),
        ("text", "Right one st"),
        ("text", "Right two st"),
    ]


def test_three_columns_with_a_figure_across_them() -> None:
    """Three columns above a full-width figure and its caption, three more below it."""
    boxes, words = [], []
    for row, (top, bottom) in enumerate(((200, 600), (1000, 1400))):
        for column in range(3):
            x0 = 100 + column * 350
            boxes.append(box("text", x0, top, x0 + 320, bottom))
            words.append(lines_in(x0, top, x0 + 320, [f"r{row}c{column} text", "more", "end."], indent=15))
    boxes += [box("figure", 100, 650, 1120, 900), box("figure_caption", 400, 910, 820, 935)]
    words.append([([405, 912, 815, 933], "Figure 2: A wide figure.")])
    blocks = from_layout({"boxes": boxes}, ocr(*words), PAGE)
    assert [b.content.split("\n")[0] for b in reading_order(blocks)] == [
        "r0c0 text more end.",
        "r0c1 text more end.",
        "r0c2 text more end.",
        "",  # the figure
        "Figure 2: A wide figure.",
        "r1c0 text more end.",
        "r1c1 text more end.",
        "r1c2 text more end.",
    ]


def test_captions_stay_with_their_table_and_margins_leave_the_order() -> None:
    """A table caption above its table in the right column, header and page number in the
    margins: the caption is read just before the table; header and number come first and
    last, and get no order when left out of the Markdown."""
    layout = {
        "boxes": [
            box("header", 130, 40, 600, 60),
            box("text", 130, 200, 610, 900),
            box("table_caption", 640, 200, 1100, 225),
            box("table", 630, 240, 1110, 500),
            box("text", 630, 540, 1110, 900),
        ]
    }
    words = ocr(
        [([132, 42, 590, 58], "Journal of Small Rivers")],
        lines_in(130, 200, 610, ["Left text", "goes on", "ends."], indent=20),
        [([645, 202, 1090, 223], "Table 3: Depths.")],
        [([640, 250, 700, 270], "cell")],  # a table's lines are not text
        lines_in(630, 540, 1110, ["Right text", "goes on", "ends."], indent=20),
        [([610, 1680, 630, 1700], "7")],  # no region holds it: a page number
    )
    ordered = reading_order(from_layout(layout, words, PAGE), ignored=frozenset(DEFAULT_IGNORED))
    assert [(b.label, b.order) for b in ordered] == [  # PaddleX numbers text, titles and formulas only
        ("header", None),
        ("text", 1),
        ("table_title", None),
        ("table", None),
        ("text", 2),
        ("number", None),
    ]
    text, _, _ = page_markdown(ordered, PAGE[1], MarkdownOptions())
    assert "Journal" not in text and "7" not in text  # margins are left out by default
    shown, _, _ = page_markdown(ordered, PAGE[1], MarkdownOptions(ignore=frozenset()))
    assert shown.startswith("Journal of Small Rivers") and shown.endswith("7")


def test_paragraphs_headings_and_page_flags() -> None:
    """Rows become paragraphs where a row stops short or the next is indented; a hyphenated
    word is put back together; a page that ends mid-paragraph says so, as does one that
    starts mid-paragraph."""
    layout = {"boxes": [box("title", 130, 100, 500, 125), box("text", 130, 150, 1110, 400)]}
    rows = [
        ([130, 150, 1110, 174], "The first paragraph runs over"),
        ([130, 180, 600, 204], "two rows."),
        ([160, 210, 1110, 234], "The second one is indented and hyphen-"),
        ([130, 240, 1110, 264], "ates a word, then runs to the edge of the"),
        ([130, 270, 1110, 294], "page"),  # short, but the last row: the page may end mid-sentence
    ]
    rows[-1] = ([130, 270, 1110, 294], "page, full width")
    words = ocr([([132, 102, 480, 123], "2.1Stations")], rows)
    ordered = reading_order(from_layout(layout, words, PAGE))
    text, starts, ends = page_markdown(ordered, PAGE[1], MarkdownOptions())
    assert text.split("\n\n") == [
        "### 2.1 Stations",
        "The first paragraph runs over two rows.",
        "The second one is indented and hyphenates a word, then runs to the edge of the page, full width",
    ]
    assert starts is True and ends is False
    continued = {"boxes": [box("text", 130, 150, 1110, 300)]}
    next_rows = ocr([([130, 150, 1110, 174], "where it goes on"), ([130, 180, 500, 204], "and stops.")])
    _, starts, ends = page_markdown(
        reading_order(from_layout(continued, next_rows, PAGE)), 1240, MarkdownOptions()
    )
    assert starts is False and ends is True


def test_a_line_run_across_the_gutter_is_cut_between_its_words() -> None:
    """The detector joined the last word of a left-column row to a right-column row's word
    ("where" + "night."): with word boxes, each part goes to its own column."""
    layout = {"boxes": [box("text", 126, 500, 612, 600), box("text", 630, 500, 1110, 600)]}
    words = {
        "rec_boxes": [[126, 518, 689, 549]],
        "rec_texts": ["the tree line, where night."],
        "text_word": [["the", "tree", "line,", "where", "night."]],
        "text_word_region": [
            [
                [[x, 518], [x + w, 518], [x + w, 549], [x, 549]]
                for x, w in ((126, 40), (176, 50), (236, 60), (540, 70), (630, 59))
            ]
        ],
    }
    left, right = reading_order(from_layout(layout, words, PAGE))
    assert (left.content, right.content) == ("the tree line, where", "night.")


def test_layout_settings_per_class() -> None:
    """PaddleX's per-class layout settings: thresholds, unclip ratios and merge modes by class id."""
    found = {
        "boxes": [
            {"cls_id": 0, "label": "text", "score": 0.6, "coordinate": [10, 10, 110, 60]},
            {"cls_id": 0, "label": "text", "score": 0.5, "coordinate": [20, 20, 60, 40]},
            {"cls_id": 1, "label": "title", "score": 0.45, "coordinate": [10, 70, 110, 90]},
            {"cls_id": 2, "label": "figure", "score": 0.9, "coordinate": [200, 200, 300, 300]},
        ]
    }
    refined = refine(found, False, {2: [2.0, 1.0]}, {0: "large"}, threshold={0: 0.55, 1: 0.4})
    by_label = {b["label"]: b["coordinate"] for b in refined["boxes"]}
    assert set(by_label) == {"text", "title", "figure"}  # the text inside the text merged away
    assert by_label["text"] == [10, 10, 110, 60]
    assert by_label["figure"] == [150.0, 200.0, 350.0, 300.0]  # twice as wide, as high
    small = refine(found, False, None, {0: "small"}, threshold={0: 0.4})
    assert [b["coordinate"] for b in small["boxes"] if b["label"] == "text"] == [[20, 20, 60, 40]]


def test_five_hundred_tiny_regions_are_ordered_in_bounded_time() -> None:
    boxes = [box("text", 40 + 60 * (i % 20), 40 + 60 * (i // 20), 80 + 60 * (i % 20), 70 + 60 * (i // 20))
             for i in range(500)]  # fmt: skip
    words = ocr([([b["coordinate"][0] + 2, b["coordinate"][1] + 2, b["coordinate"][2] - 2,
                   b["coordinate"][3] - 2], f"w{i}") for i, b in enumerate(boxes)])  # fmt: skip
    started = time.perf_counter()
    ordered = reading_order(from_layout({"boxes": boxes}, words, PAGE))
    elapsed = time.perf_counter() - started
    assert len(ordered) == 500 and elapsed < 20, elapsed
    assert [b.content for b in ordered[:3]] == ["w0", "w20", "w40"]  # a grid of columns: down first


def test_whole_documents_join_paragraphs_across_pages() -> None:
    assert join_pages("a run-", "on word", False, False) == "a runon word"
    assert join_pages("goes on", "and on", False, False) == "goes on and on"
    assert join_pages("ends.", "Starts", True, False) == "ends.\n\nStarts"
    assert join_pages("中文", "继续", False, False) == "中文继续"
    assert join_rows(["hyphen-", "ated", "x-", "Ray"]) == "hyphenated x- Ray"
    pages = [
        {"markdown": {"text": "# T\n\nOne goes", "images": {}, "isStart": True, "isEnd": False}},
        {
            "markdown": {
                "text": 'on here.\n\n<img src="imgs/a.jpg" alt="Image" />',
                "images": {"imgs/a.jpg": pybase64.b64encode(b"\xff\xd8jpeg").decode()},
                "isStart": False,
                "isEnd": True,
            }
        },
    ]
    document = MarkdownDocument({})
    for page in pages:
        document.add(page)
    expected = '# T\n\nOne goes on here.\n\n<img src="imgs/page2_a.jpg" alt="Image" />\n'
    assert document.finish().decode() == expected
    archive = MarkdownZip({})
    written = b"".join(archive.add(page) for page in pages) + archive.finish()
    with zipfile.ZipFile(io.BytesIO(written)) as opened:
        assert opened.namelist() == ["imgs/page2_a.jpg", "document.md"]
        assert opened.read("document.md").decode() == expected
        assert opened.read("imgs/page2_a.jpg") == b"\xff\xd8jpeg"
    failed = MarkdownZip({})
    written = failed.add(pages[0]) + failed.fail(504, "no page within 300 s")
    with zipfile.ZipFile(io.BytesIO(written)) as opened:
        assert "504: no page within 300 s" in opened.read("ERROR.txt").decode()
        assert opened.read("document.md").decode() == "# T\n\nOne goes\n"


def test_region_detection_reads_each_region_as_a_unit() -> None:
    """With RegionDetection's boxes (PP-DocBlockLayout), a region's blocks are read together
    before the next region's: two stories stacked on a two-column page are read story by
    story, where columns alone read the left column of both first; group_id says which."""
    layout = {
        "boxes": [
            box("text", 130, 200, 600, 300),  # story A, left column
            box("text", 640, 200, 1110, 300),  # story A, right column
            box("text", 130, 320, 600, 420),  # story B, left column
            box("text", 640, 320, 1110, 420),  # story B, right column
        ]
    }
    words = ocr(*(lines_in(b["coordinate"][0], b["coordinate"][1], b["coordinate"][2], [f"block {i}", "end."])
                  for i, b in enumerate(layout["boxes"])))  # fmt: skip
    regions = [[120, 190, 1120, 310], [120, 312, 1120, 430]]
    blocks = reading_order(from_layout(layout, words, PAGE))
    assert [b.content for b in blocks] == ["block 0 end.", "block 2 end.", "block 1 end.", "block 3 end."]
    grouped = reading_order(from_layout(layout, words, PAGE), regions)
    assert [(b.content, b.group) for b in grouped] == [
        ("block 0 end.", 0), ("block 1 end.", 0), ("block 2 end.", 1), ("block 3 end.", 1)
    ]  # fmt: skip
