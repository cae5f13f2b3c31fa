"""PP-StructureV3 at /layout-parsing against one real server, with the real embedded models.

Ground truth: articles whose content is known exactly (tests/structure_docs.py, typeset with
pdflatex: one and two columns, headings two levels deep, a ruled table, a figure, an
equation, a footnote), sent as PDFs and as 150-dpi page photos. Every paragraph must be
found (character error rate), in reading order, headings as headings at their level, the
table's cells in their rows, the figure carried as an image; what sits in the margins
(footnote, page number) is left out. Then the request fields, whole documents (Markdown
and zip), streaming, and bad input.
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pdfs
import pypdfium2
import pytest
import requests
import structure_docs as truth
import text_layers
from conftest import Server, image_b64, start_server, stop_and_check_clean
from PIL import Image
from rapidfuzz.distance import Levenshtein
from test_documents import post, result, shipped_config

DOCS = Path(__file__).parent / "data" / "structure"
SERVING = {"instances_per_device": 2, "cpu_threads": 1, "max_pdf_pages": 4}
ROUTE = "/layout-parsing"
HEADINGS = [
    "# " + truth.TITLE,
    "## 1 Introduction",
    "## 2 Methods",
    "### 2.1 Stations",
    "### 2.2 Flow",
    "## 3 Results",
    "## 4 Discussion",
]
MAX_CER = 0.03  # per paragraph; the misreadings are OCR's (PP-OCRv5 mobile reads "fl" as "f")


@pytest.fixture(scope="module")
def structure(work_dir: Path) -> Server:
    running = start_server(shipped_config(work_dir, "PP-StructureV3", SERVING), work_dir)
    yield running
    stop_and_check_clean(running)


def pdf_b64(name: str) -> str:
    return base64.b64encode((DOCS / f"{name}.pdf").read_bytes()).decode()


def photos(name: str, dpi: int = 150) -> list[Image.Image]:
    document = pypdfium2.PdfDocument(str(DOCS / f"{name}.pdf"))
    return [document[i].render(scale=dpi / 72).to_pil().convert("RGB") for i in range(len(document))]


def paragraphs(markdown: str) -> list[str]:
    return [p.strip() for p in markdown.split("\n\n") if p.strip()]


def cer(found: str, expected: str) -> float:
    return Levenshtein.normalized_distance(found, expected)


def check_text(markdown: str, expected: list[str], headings: list[str]) -> None:
    """Every expected paragraph found (best match's CER), in order; the headings exactly."""
    found = paragraphs(markdown)
    assert [p for p in found if p.startswith("#")] == headings, markdown
    places = []
    for paragraph in expected:
        errors = [cer(candidate, paragraph) for candidate in found]
        best = int(np.argmin(errors))
        assert errors[best] <= MAX_CER, (paragraph, found[best], errors[best])
        places.append(best)
    assert places == sorted(places), places  # in reading order


def check_table(markdown: str) -> None:
    tables = re.findall(r"<table.*?</table>", markdown, re.S)
    assert len(tables) == 1, markdown
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", tables[0])]
    assert rows == truth.TABLE


def expected_paragraphs(two_columns: bool) -> list[str]:
    return [b.text for b in truth.article(two_columns) if b.kind == "text"]


@pytest.mark.parametrize(
    ("name", "own_text"),
    [("article_one_column", True), ("article_two_columns", True), ("article_two_columns", False)],
)
def test_a_typeset_article_becomes_one_markdown_document(
    structure: Server, name: str, own_text: bool
) -> None:
    """The whole PDF as Markdown (Accept: text/markdown): text, order, headings, table,
    figure and caption; footnote and page numbers left out. From the PDF's own text (the
    default), and read by OCR as PaddleX does (usePdfTextLayer false)."""
    response = requests.post(
        f"{structure.url}{ROUTE}",
        json={"file": pdf_b64(name), "usePdfTextLayer": own_text},
        headers={"Accept": "text/markdown"},
        timeout=300,
    )
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"].startswith("text/markdown")
    markdown = response.text
    two = name.endswith("two_columns")
    check_text(markdown, expected_paragraphs(two), HEADINGS)
    check_table(markdown)
    found = paragraphs(markdown)
    figure = next(i for i, p in enumerate(found) if re.search(r'<img src="imgs/page2_img_in_image_box', p))
    assert cer(re.sub(r"<[^>]+>", "", found[figure + 1]), truth.FIGURE_CAPTION) < MAX_CER
    table = next(i for i, p in enumerate(found) if "<table" in p)
    assert cer(re.sub(r"<[^>]+>", "", found[table + 1]), truth.TABLE_CAPTION) < MAX_CER
    assert "calibrated in an ice bath" not in markdown  # the footnote
    assert not any(re.fullmatch(r"\d+", p) for p in found)  # page numbers


def test_page_photos_read_as_the_pdf_does(structure: Server) -> None:
    """The two-column article as 150-dpi page photos (JPEG), one request per page, PaddleX's
    answer shape; the pages joined by their isStart/isEnd give the same text."""
    from pxserve.shared.markdown_document import MarkdownDocument

    document = MarkdownDocument({})
    for page in photos("article_two_columns"):
        answer = result(post(structure, ROUTE, {"file": image_b64(page, quality=90), "fileType": 1}))
        assert answer["dataInfo"]["type"] == "image"
        (entry,) = answer["layoutParsingResults"]
        assert set(entry) == {"prunedResult", "markdown", "outputImages", "inputImage"}
        pruned = entry["prunedResult"]
        assert {"parsing_res_list", "layout_det_res", "overall_ocr_res", "table_res_list", "seal_res_list",
                "model_settings"} <= set(pruned)  # fmt: skip
        blocks = pruned["parsing_res_list"]
        assert [b["block_id"] for b in blocks] == list(range(len(blocks)))
        orders = [b["block_order"] for b in blocks if b["block_order"] is not None]
        assert orders == list(range(1, len(orders) + 1))
        for block in blocks:
            assert set(block) >= {"block_label", "block_content", "block_bbox", "block_id", "block_order"}
        for path, jpeg in entry["markdown"]["images"].items():
            assert path.startswith("imgs/") and path in entry["markdown"]["text"]
            assert Image.open(io.BytesIO(base64.b64decode(jpeg))).format == "JPEG"
        document.add(entry)
    markdown = document.finish().decode()
    check_text(markdown, expected_paragraphs(True), HEADINGS)
    check_table(markdown)


def test_a_zip_holds_the_document_and_its_pictures(structure: Server) -> None:
    response = requests.post(
        f"{structure.url}{ROUTE}",
        json={"file": pdf_b64("article_one_column")},
        headers={"Accept": "application/zip"},
        timeout=300,
    )
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        assert names[-1] == "document.md"
        markdown = archive.read("document.md").decode()
        pictures = [n for n in names if n.startswith("imgs/")]
        assert any("img_in_image_box" in n for n in pictures) and all(n in markdown for n in pictures)
        chart = Image.open(io.BytesIO(archive.read(next(n for n in pictures if "image_box" in n))))
        assert chart.format == "JPEG" and chart.width > 400  # the figure, not a sliver
    check_text(markdown, expected_paragraphs(False), HEADINGS)


def test_pages_stream_as_ndjson(structure: Server) -> None:
    response = requests.post(
        f"{structure.url}{ROUTE}",
        json={"file": pdf_b64("article_two_columns")},
        headers={"Accept": "application/x-ndjson"},
        timeout=300,
    )
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line.get("pageIndex") for line in lines] == [0, 1, None]
    assert lines[0]["result"]["markdown"]["text"].startswith("# " + truth.TITLE)
    assert lines[-1]["result"]["totals"]["pages"] == 2


def test_request_fields_are_honoured(structure: Server) -> None:
    page = image_b64(photos("article_one_column")[0], quality=90)

    def page_entry(**fields: Any) -> dict[str, Any]:
        return result(post(structure, ROUTE, {"file": page, **fields}))["layoutParsingResults"][0]

    plain = page_entry(
        prettifyMarkdown=False, formatBlockContent=True, markdownIgnoreLabels=[], useTableRecognition=False
    )
    text = plain["markdown"]["text"]
    assert "<div" not in text and "calibrated in an ice bath" in text  # not prettified; footnote kept
    assert "<table" not in text and re.search(r'<img src="imgs/img_in_table_box[^"]*"', text)
    titles = [b for b in plain["prunedResult"]["parsing_res_list"] if b["block_label"] == "paragraph_title"]
    assert titles and all(b["block_content"].startswith("#") for b in titles)
    assert plain["prunedResult"]["model_settings"]["use_table_recognition"] is False
    assert plain["prunedResult"]["table_res_list"] == []
    # Per-class thresholds by class id (CDLA: 0 text): no text region survives 0.999.
    strict = page_entry(layoutThreshold={"0": 0.999}, visualize=True)
    labels = {b["label"] for b in strict["prunedResult"]["layout_det_res"]["boxes"]}
    assert "text" not in labels and "title" in labels
    assert set(strict["outputImages"]) == {"layout_det_res", "overall_ocr_res", "layout_order_res"}
    assert strict["inputImage"]
    refused = {
        "useFormulaRecognition": "PP-FormulaNet_plus-L",
        "useChartRecognition": "PP-Chart2Table",
        "useE2eWiredTableRecModel": "SLANeXt_wired",
        "useWiredTableCellsTransToHtml": "RT-DETR-L_wired_table_cell_det",
        "useWirelessTableCellsTransToHtml": "RT-DETR-L_wireless_table_cell_det",
        "useTableOrientationClassify": "TableOrientationClassify",
        "useRegionDetection": "PP-DocBlockLayout",
        "useDocUnwarping": "unwarping",
    }
    for field, model in refused.items():
        answer = post(structure, ROUTE, {"file": page, field: True})
        assert answer.status_code == 422 and model in answer.json()["errorMsg"], (field, answer.text)
    for bad in (
        {"layoutThreshold": {"0": 2}},
        {"layoutMergeBboxesMode": "biggest"},
        {"layoutUnclipRatio": -1},
    ):
        assert post(structure, ROUTE, {"file": page, **bad}).status_code == 422, bad


def test_paddlex_37_word_export_and_markdown_without_images(structure: Server) -> None:
    """outputFormats ["docx"]: each page as a Word file (read back with python-docx: headings
    at their level, paragraphs, the table as a Word table, the figure as a picture);
    returnMarkdownImages false: no markdown.images; any other format a 422."""
    import docx

    fields = {"outputFormats": ["docx"], "returnMarkdownImages": False}
    pages = result(post(structure, ROUTE, {"file": pdf_b64("article_one_column"), **fields}, timeout=300))
    headings, texts, tables, pictures = [], [], [], 0
    for number, entry in enumerate(pages["layoutParsingResults"], 1):
        assert "images" not in entry["markdown"]
        export = entry["exports"]["docx"]
        assert export["fileName"] == f"page_{number}.docx"
        document = docx.Document(io.BytesIO(base64.b64decode(export["content"])))
        for paragraph in document.paragraphs:
            style = paragraph.style.name
            if style == "Title" or style.startswith("Heading"):
                level = 1 if style == "Title" else int(style.split()[-1]) + 1
                headings.append(f"{'#' * level} {paragraph.text}")
            elif paragraph.text:
                texts.append(paragraph.text)
        tables += [[[cell.text for cell in row.cells] for row in table.rows] for table in document.tables]
        pictures += len(document.inline_shapes)
    assert headings == HEADINGS
    for paragraph in expected_paragraphs(False):
        assert min(cer(text, paragraph) for text in texts) <= MAX_CER, paragraph
    # The figure and the equation (no formula model: a picture), as in the Markdown, which still
    # names them without carrying them.
    markdown = "".join(entry["markdown"]["text"] for entry in pages["layoutParsingResults"])
    assert tables == [truth.TABLE] and pictures == markdown.count('<img src="imgs/') == 2
    wrong = post(structure, ROUTE, {"file": pdf_b64("article_one_column"), "outputFormats": ["pdf"]})
    assert wrong.status_code == 422 and "outputFormats" in wrong.json()["errorMsg"], wrong.text
    blank = {"file": base64.b64encode(pdfs.blank()).decode(), "outputFormats": ["docx"]}
    (empty,) = result(post(structure, ROUTE, blank))["layoutParsingResults"]
    document = docx.Document(io.BytesIO(base64.b64decode(empty["exports"]["docx"]["content"])))
    assert [p.text for p in document.paragraphs if p.text] == [] and empty["markdown"]["images"] == {}


def test_bad_and_odd_pages(structure: Server) -> None:
    """A blank page (empty Markdown), a page that is one photograph, a page of 500 tiny
    words, unreadable files: answers, never a 500, and the server serves on."""
    blank = result(post(structure, ROUTE, {"file": base64.b64encode(pdfs.blank()).decode()}))
    (entry,) = blank["layoutParsingResults"]
    assert entry["markdown"]["text"] == "" and entry["prunedResult"]["parsing_res_list"] == []
    photo = Image.open(Path(__file__).parent / "data" / "chelsea.jpg").convert("RGB").resize((1240, 1754))
    assert post(structure, ROUTE, {"file": image_b64(photo)}).status_code == 200
    words = Image.new("RGB", (1240, 1754), "white")
    from PIL import ImageDraw

    draw = ImageDraw.Draw(words)
    for i in range(500):
        draw.text((30 + 60 * (i % 20), 40 + 68 * (i // 20)), f"w{i}", fill="black")
    crowded = post(structure, ROUTE, {"file": image_b64(words)}, timeout=240)
    assert crowded.status_code == 200
    for bad in (
        "not base64!",
        base64.b64encode(b"\x00" * 64).decode(),
        base64.b64encode(pdfs.encrypted()).decode(),
    ):
        assert post(structure, ROUTE, {"file": bad}).status_code == 422
    assert structure.process.poll() is None and len(structure.workers()) == 2


# PP-DocLayout_plus-L's classes, as its export's inference.yml lists them.
DOC_LAYOUT_PLUS = [
    "paragraph_title", "image", "text", "number", "abstract", "content", "figure_table_chart_title",
    "formula", "table", "reference", "doc_title", "footnote", "header", "algorithm", "footer", "seal",
    "chart", "formula_number", "aside_text", "reference_content",
]  # fmt: skip


def test_a_paddlex_layout_export_brings_its_own_labels_and_per_class_settings(work_dir: Path) -> None:
    """A layout model shaped like PaddleX's PP-DocLayout exports (tests/tiny_model.py: NMS in the
    graph, one box over the whole page, class 0, scored by the page's brightness) with
    PP-DocLayout_plus-L's label list: its labels are used as they are, and PaddleX's per-class
    settings (by class id) apply, from the config and per request."""
    import tiny_model
    import yaml

    layout = tiny_model.build_detector(work_dir / "tiny-doclayout")
    spec = yaml.safe_load((layout / "inference.yml").read_text())
    spec.update(label_list=DOC_LAYOUT_PLUS, draw_threshold=0.5)
    (layout / "inference.yml").write_text(yaml.safe_dump(spec))
    path = shipped_config(work_dir, "PP-StructureV3", {"instances_per_device": 1, "cpu_threads": 1})
    config = yaml.safe_load(path.read_text())
    config["SubModules"]["LayoutDetection"].update(
        model_name="PP-DocLayout_plus-L",
        model_dir=str(layout),
        threshold={0: 0.05, 2: 0.5},
        layout_unclip_ratio=[1.0, 1.0],
        layout_merge_bboxes_mode={0: "large"},
    )
    path.write_text(yaml.safe_dump(config))
    server = start_server(path, work_dir)
    try:
        gray = Image.new("RGB", (800, 300), (150, 150, 150))  # a brightness the box's score can sit under
        from PIL import ImageDraw

        ImageDraw.Draw(gray).text((40, 120), "Results in brief", fill="black")
        page = image_b64(gray, quality=95)

        def boxes(**fields: Any) -> list[dict[str, Any]]:
            entry = result(post(server, ROUTE, {"file": page, **fields}))["layoutParsingResults"][0]
            return entry["prunedResult"]["layout_det_res"]["boxes"]

        (found,) = boxes()
        assert found["label"] == "paragraph_title" and found["cls_id"] == 0
        assert found["coordinate"] == [0.0, 0.0, 800.0, 300.0]
        score = found["score"]
        assert boxes(layoutThreshold={"0": min(1.0, score + 0.05)}) == []
        assert len(boxes(layoutThreshold={"0": score - 0.05, "2": 0.99})) == 1
        (half,) = boxes(layoutUnclipRatio={"0": [0.5, 0.5]})
        assert half["coordinate"] == [200.0, 75.0, 600.0, 225.0]
        entry = result(post(server, ROUTE, {"file": page}))["layoutParsingResults"][0]
        assert entry["markdown"]["text"].startswith("## ")  # the page read as one title
    finally:
        stop_and_check_clean(server)


# -- a PDF's own text (pxserve's extension) -------------------------------------------------------
def layer_pages(structure: Server, data: bytes, **fields: Any) -> list[dict[str, Any]]:
    payload = {"file": base64.b64encode(data).decode(), **fields}
    return result(post(structure, ROUTE, payload, timeout=300))["layoutParsingResults"]


def used(entry: dict[str, Any]) -> dict[str, Any]:
    return entry["prunedResult"]["text_layer_res"]


def test_a_pdfs_own_text_is_read_exactly_with_headings_from_its_fonts(structure: Server) -> None:
    """A typed page: every word from the layer (exact), headings at the level their font size
    says (no numbering to go by), a bold run-in heading made a heading, scores of 1."""
    (entry,) = layer_pages(structure, text_layers.typed())
    assert used(entry) == {"used": True, "reason": "", "ocr_regions": 0}
    assert entry["prunedResult"]["model_settings"]["use_pdf_text_layer"] is True
    markdown = entry["markdown"]["text"]
    assert [p for p in paragraphs(markdown) if p.startswith("#")] == [
        f"# {text_layers.TITLE}",
        f"## {text_layers.SECTION}",
        f"#### {text_layers.RUN_IN}",
        f"### {text_layers.SUBSECTION}",
    ], markdown
    found = paragraphs(markdown)
    for expected in text_layers.truth_paragraphs():
        assert min(cer(p, expected) for p in found) <= 0.002, (expected, markdown)
    overall = entry["prunedResult"]["overall_ocr_res"]
    assert set(overall["rec_scores"]) == {1.0} and "text_layer_fonts" not in overall
    titles = [b for b in entry["prunedResult"]["parsing_res_list"] if b["block_label"] == "paragraph_title"]
    assert text_layers.RUN_IN in [b["block_content"] for b in titles]
    orders = [b["block_order"] for b in entry["prunedResult"]["parsing_res_list"] if b["block_order"]]
    assert orders == list(range(1, len(orders) + 1))


FIRST = " ".join(text_layers.PARAGRAPHS[0])
LAST = " ".join(text_layers.CLEANING)
LAYER_FALLBACKS = [  # the file, why its layer is not used, a paragraph OCR reads on the page as shown
    ("scanned", "it has no text layer", FIRST),
    ("invisible_over_scan", "invisible (a scanner's OCR layer", FIRST),
    ("lying_map", "does not match what the page shows", FIRST),
    ("unmapped", "no usable Unicode map", None),  # glyphs no font here draws: a blank page
    ("off_the_page", "outside the page box", text_layers.CLEANING[-1]),  # the one line left on it
]


@pytest.mark.parametrize(("name", "reason", "shown"), LAYER_FALLBACKS, ids=[n for n, *_ in LAYER_FALLBACKS])
def test_a_text_layer_that_cannot_be_trusted_falls_back_to_ocr(
    structure: Server, name: str, reason: str, shown: str | None
) -> None:
    """Each page whose layer is not what it shows is read by OCR, and the answer says why."""
    (entry,) = layer_pages(structure, getattr(text_layers, name)())
    assert used(entry)["used"] is False and reason in used(entry)["reason"], used(entry)
    assert entry["prunedResult"]["model_settings"]["use_pdf_text_layer"] is False
    found = paragraphs(entry["markdown"]["text"])
    if shown is None:
        assert found == []
    else:
        assert min(cer(p, shown) for p in found) <= MAX_CER, found
    assert "scanner guess" not in entry["markdown"]["text"]


def test_pages_decide_for_themselves_and_pictures_of_text_are_read_by_ocr(structure: Server) -> None:
    """A typed page then a scanned one: the first from its layer, the second by OCR; a typed page
    with a picture of text pasted in: its layer, and OCR only for the picture's region; a
    turned page and a request that asks for OCR: OCR; 2,000 tiny text objects: an answer."""
    typed, scanned = layer_pages(structure, text_layers.mixed())
    assert used(typed)["used"] is True and used(scanned)["reason"] == "it has no text layer"
    second = " ".join(text_layers.PARAGRAPHS[1])
    assert min(cer(p, second) for p in paragraphs(scanned["markdown"]["text"])) < MAX_CER
    (pasted,) = layer_pages(structure, text_layers.with_picture_of_text())
    assert used(pasted) == {"used": True, "reason": "", "ocr_regions": 1}
    notes = " ".join(text_layers.PICTURE_TEXT)
    assert min(cer(p, notes) for p in paragraphs(pasted["markdown"]["text"])) <= MAX_CER
    (turned,) = layer_pages(structure, text_layers.typed(rotate=90))
    assert "sideways" in used(turned)["reason"]
    (asked,) = layer_pages(structure, text_layers.typed(), usePdfTextLayer=False)
    assert used(asked) == {"used": False, "reason": "not asked for (usePdfTextLayer false)"}
    assert f"{text_layers.SECTION}" in asked["markdown"]["text"]  # OCR read it
    (tiny,) = layer_pages(structure, text_layers.tiny_objects())
    assert used(tiny)["used"] is True and "w99" in json.dumps(tiny["prunedResult"]["overall_ocr_res"])
    assert structure.process.poll() is None and len(structure.workers()) == 2


DEBIAN_SPEC = Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf")  # pdfTeX, GPL-2+


@pytest.mark.skipif(not DEBIAN_SPEC.is_file(), reason="Debian's shared-mime-info docs are not installed")
def test_a_real_pdf_made_by_others_is_read_from_its_own_text_as_ocr_reads_it(structure: Server) -> None:
    """A specification typeset by others (read where Debian installs it, not copied here): its
    first two pages from their own text, the numbered headings at their levels, and the same
    paragraphs OCR reads off the rendered pages (the layer's words exact, OCR's nearly)."""
    import pypdfium2

    pages = pypdfium2.PdfDocument.new()
    pages.import_pages(pypdfium2.PdfDocument(str(DEBIAN_SPEC)), [0, 1])
    buffer = io.BytesIO()
    pages.save(buffer)
    own = layer_pages(structure, buffer.getvalue())
    ocr = layer_pages(structure, buffer.getvalue(), usePdfTextLayer=False)
    assert [used(page)["used"] for page in own] == [True, True]
    markdown = "\n\n".join(page["markdown"]["text"] for page in own)
    headings = [p for p in paragraphs(markdown) if p.startswith("#")]
    assert {"## 1. Introduction", "## 2. Unified system"} <= set(headings), headings
    assert any(h.startswith("### 1.1. ") for h in headings)
    read = paragraphs("\n\n".join(page["markdown"]["text"] for page in ocr))
    running = [p for p in paragraphs(markdown) if len(p) > 80 and not p.startswith(("#", "<"))]
    close = [p for p in running if min(cer(p, q) for q in read) <= 0.05]
    assert len(running) >= 5 and len(close) >= 0.9 * len(running), (running, read)


def test_switches_for_models_this_server_lacks_can_be_turned_off_and_said(work_dir: Path) -> None:
    """Serving.unserved_switches: turn_off, for clients that always send such switches (the
    basic-serving MCP server sends useChartRecognition: true): the page is read with them off,
    model_settings says so, and each page's warnings name what was turned off and why."""
    config = shipped_config(
        work_dir, "PP-StructureV3", {"instances_per_device": 1, "unserved_switches": "turn_off"}
    )
    server = start_server(config, work_dir)
    try:
        payload = {
            "file": base64.b64encode(text_layers.typed()).decode(),
            "useChartRecognition": True,
            "useFormulaRecognition": True,
            "useDocUnwarping": True,
        }
        (entry,) = result(post(server, ROUTE, payload))["layoutParsingResults"]
        pruned = entry["prunedResult"]
        assert [w.split(" was turned off")[0] for w in pruned["warnings"]] == [
            "useFormulaRecognition", "useChartRecognition", "useDocUnwarping",
        ]  # fmt: skip
        assert "PP-Chart2Table" in pruned["warnings"][1]
        assert pruned["model_settings"]["use_chart_recognition"] is False
        assert text_layers.SECTION in entry["markdown"]["text"]
        plain = result(post(server, ROUTE, {"file": payload["file"]}))["layoutParsingResults"][0]
        assert "warnings" not in plain["prunedResult"]
    finally:
        stop_and_check_clean(server)
