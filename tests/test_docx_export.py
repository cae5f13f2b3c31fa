"""The Word export's tables: HTML cells with rowspan/colspan become merged Word cells."""

from __future__ import annotations

import io

import docx

from pxserve.workers.structure.blocks import Block
from pxserve.workers.structure.docx_export import page_docx
from pxserve.workers.structure.markdown import MarkdownOptions

MERGED = (
    '<html><body><table><tr><td rowspan="2">Station</td><td colspan="2">Flow</td></tr>'
    "<tr><td>May</td><td>June</td></tr><tr><td>A &amp; B</td><td>1.4</td><td>1.1</td></tr>"
    "</table></body></html>"
)


def read(blocks: list[Block]) -> docx.document.Document:
    return docx.Document(io.BytesIO(page_docx(blocks, {}, 1000, MarkdownOptions())))


def test_merged_cells_span_their_rows_and_columns() -> None:
    (table,) = read([Block("table", [0, 0, 500, 300], content=MERGED)]).tables
    grid = [[cell.text for cell in row.cells] for row in table.rows]
    assert grid == [["Station", "Flow", "Flow"], ["Station", "May", "June"], ["A & B", "1.4", "1.1"]]
    assert table.cell(0, 1)._tc is table.cell(0, 2)._tc  # one merged cell, not two copies
    assert table.cell(0, 0)._tc is table.cell(1, 0)._tc


def test_text_no_xml_can_hold_and_overlapping_spans_do_not_fail() -> None:
    overlapping = '<table><tr><td>a</td><td rowspan="2">b</td></tr><tr><td colspan="3">c</td></tr></table>'
    document = read(
        [
            Block("doc_title", [0, 0, 900, 40], content="Title\x00 with a NUL"),
            Block("text", [0, 50, 900, 90], paragraphs=["bell\x07 and form feed\x0c gone"]),
            Block("table", [0, 100, 900, 300], content=overlapping),
            Block("footer", [0, 950, 900, 990], content="left out, as in the Markdown"),
        ]
    )
    texts = [p.text for p in document.paragraphs]
    assert texts == ["Title with a NUL", "bell and form feed gone"]
    assert len(document.tables) == 1 and document.tables[0].cell(0, 0).text == "a"
