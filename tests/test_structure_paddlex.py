"""PP-StructureV3's page logic against PaddleX 3.4.3's, on the same detections.

benchmarks/paddlex_structure_reference.py recorded, for each page photo of the typeset
articles, pxserve's layout boxes, OCR lines and tables, and what PaddleX's own
layout-parsing code (``get_layout_parsing_res``, ``LayoutParsingResultV2``) makes of them:
blocks, their text, reading order, ``block_order``, Markdown. pxserve reads the same inputs
here (workers/structure/page.py, as its runner does) and must agree:

* the same blocks, in the same order, with the same labels, boxes and ``block_order``;
* the same text in each block and the same Markdown, whitespace aside: PaddleX joins the
  rows of a paragraph with no space after a comma or full stop ("visit,which") and ends
  titles with a space; pxserve keeps the space and drops the trailing one.

Deliberate differences, not compared: lines no layout region holds (the CDLA model misses
some captions and page numbers) are text blocks of their own in pxserve, PaddleX drops
them; and ``isStart``/``isEnd``, which PaddleX sets to "continues" for any first block whose
first row is not indented, a centred title included (pxserve: only running text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pxserve.workers.structure.blocks import PICTURES, pp_label
from pxserve.workers.structure.markdown import DEFAULT_IGNORED, MarkdownOptions, page_markdown
from pxserve.workers.structure.page import PageFindings, read_page

RECORDED = json.loads((Path(__file__).parent / "data" / "structure" / "paddlex.json").read_text())["pages"]


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def pxserve_page(page: dict[str, Any]):
    layout = page["layout_det_res"]
    labels = [pp_label(box["label"]) for box in layout["boxes"]]
    tables = iter(page["tables"])
    contents = {i: next(tables)["pred_html"] for i, label in enumerate(labels) if label == "table"}
    pictures = {i for i, label in enumerate(labels) if label in PICTURES}
    findings = PageFindings(
        layout, page["ocr"], tuple(page["size"]), contents, pictures, ignored=frozenset(DEFAULT_IGNORED)
    )
    return [block for block in read_page(findings) if block.source >= 0]  # PaddleX drops the rest


@pytest.mark.parametrize("page", RECORDED, ids=lambda p: f"{p['document']}-p{p['page'] + 1}")
def test_blocks_order_and_markdown_match_paddlex(page: dict[str, Any]) -> None:
    ours = pxserve_page(page)
    theirs = page["paddlex"]["blocks"]
    assert [(b.label, [int(v) for v in b.box], b.order) for b in ours] == [
        (b["label"], b["bbox"], b["order"]) for b in theirs
    ]
    assert [squeezed(b.content) for b in ours] == [squeezed(b["content"]) for b in theirs]
    markdown, _, _ = page_markdown(ours, page["size"][1], MarkdownOptions())
    assert squeezed(markdown) == squeezed(page["paddlex"]["markdown"])
