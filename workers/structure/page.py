"""A page's blocks in reading order, from what its models found: one function both the runner
and the PaddleX comparison (tests/test_structure_paddlex.py) call, so they test the same thing."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pxserve.workers.structure.blocks import Block, from_layout, levels_from_fonts, place_run_in_titles
from pxserve.workers.structure.markdown import image_path
from pxserve.workers.structure.reading_order import number, reading_order


@dataclass
class PageFindings:
    """What the page's models found; keys are indexes into the layout's boxes."""

    layout: dict[str, Any]  # layout_det_res
    ocr: dict[str, Any]  # the page's OCR prunedResult (with word boxes, if asked for)
    size: tuple[int, int]  # (height, width)
    contents: Mapping[int, str] = field(default_factory=dict)  # tables' HTML, seals' text
    pictures: Collection[int] = ()  # boxes shown as a picture (imgs/...)
    titles: Mapping[int, str] = field(default_factory=dict)  # title regions read again whole
    regions: Sequence[list[float]] = ()  # RegionDetection's boxes
    ignored: frozenset[str] = frozenset()  # markdownIgnoreLabels


def read_page(found: PageFindings) -> list[Block]:
    blocks = from_layout(found.layout, found.ocr, found.size, dict(found.titles))
    headed = levels_from_fonts(blocks)  # only where the PDF's own text gave the fonts
    by_source = {block.source: block for block in blocks if block.source >= 0}
    for index, content in found.contents.items():
        if index in by_source:
            by_source[index].content = content
    for index in found.pictures:
        if index in by_source:
            by_source[index].image = image_path(by_source[index])
    ordered = place_run_in_titles(reading_order(blocks, found.regions, found.ignored), headed)
    return number(ordered, found.ignored) if headed else ordered
