"""Blocks in reading order: across columns, around what spans them, captions by their pictures.

The page's body is cut into bands at the blocks that span most of its width
(a document title, a figure or table across both columns, a one-column
page's paragraphs) or that cross a gutter between the narrower blocks'
columns (an author line centred over two columns). Within a band, blocks are cut recursively, columns
first: where a vertical gap runs through the whole band its sides are read
left to right; otherwise it is cut at horizontal gaps and each part read top
to bottom (XY-cut, preferring columns, which is how a multi-column page is
read). Headers come first, then the body, then footers and footnotes, then
what sits beside the text (page and equation numbers, seals, asides), as
PaddleX lists them. A caption is moved next to the picture or table it
belongs to. :func:`number` gives ``block_order`` as PaddleX does: to text,
titles and formulas (not pictures, tables or captions), in reading order.

With region detection (PP-DocBlockLayout), each region is read as a unit:
regions are ordered as blocks are, and each one's blocks inside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol, TypeVar

from pxserve.workers.structure.blocks import CAPTIONS, MARGINS, NUMBERED, UNORDERED, Block, overlap, union

WIDE = 0.55  # of the body's width: a block this wide is a band of its own
_TOP_MARGINS = frozenset({"header", "header_image"})


class Boxed(Protocol):
    box: list[float]


T = TypeVar("T", bound=Boxed)


def reading_order(
    blocks: list[Block], regions: Sequence[list[float]] = (), ignored: frozenset[str] = frozenset()
) -> list[Block]:
    """All blocks, ordered; ``order`` numbered (see :func:`number`), ``group`` set to their region."""
    margins = [b for b in blocks if b.label in MARGINS]
    aside = [b for b in blocks if b.label in UNORDERED]
    body = [b for b in blocks if b.label not in MARGINS | UNORDERED]
    if regions:
        ordered = _by_region(body, list(regions))
    else:
        ordered = order_boxes(body)
        for block in ordered:
            block.group = 0
    ordered = _captions_beside(ordered)
    top = sorted((b for b in margins if b.label in _TOP_MARGINS), key=lambda b: (b.box[1], b.box[0]))
    bottom = sorted((b for b in margins if b.label not in _TOP_MARGINS), key=lambda b: (b.box[1], b.box[0]))
    aside.sort(key=lambda b: (b.box[1], b.box[0]))
    return number(top + ordered + bottom + aside, ignored)


def number(ordered: list[Block], ignored: frozenset[str]) -> list[Block]:
    """``block_order`` 1, 2, ... for the blocks PaddleX numbers (text, titles, formulas) that are
    not left out of the Markdown; None for the rest."""
    count = 0
    for block in ordered:
        block.order = None
        if block.label in NUMBERED and block.label not in ignored:
            count += 1
            block.order = count
    return ordered


def order_boxes(items: list[T]) -> list[T]:
    """Boxes in reading order: bands at the wide ones, then columns first within each band."""
    if len(items) <= 1:
        return list(items)
    left = min(item.box[0] for item in items)
    right = max(item.box[2] for item in items)
    wide = WIDE * (right - left)
    gutters = _gutters([item for item in items if item.box[2] - item.box[0] <= wide])
    ordered: list[T] = []
    band: list[T] = []
    for item in sorted(items, key=lambda item: (item.box[1], item.box[0])):
        crosses = any(item.box[0] < start and item.box[2] > end for start, end in gutters)
        if item.box[2] - item.box[0] > wide or crosses:
            ordered += [*_xy_cut(band), item]
            band = []
        else:
            band.append(item)
    return ordered + _xy_cut(band)


def _xy_cut(items: list[T]) -> list[T]:
    if len(items) <= 1:
        return list(items)
    columns, rows = _split(items, 0), _split(items, 1)
    # Columns first where they stand side by side; boxes that are only apart in x and in y
    # (a heading over an author line) are read top to bottom.
    if len(columns) > 1 and (len(rows) == 1 or _side_by_side(columns)):
        return [item for part in columns for item in _xy_cut(part)]
    if len(rows) > 1:
        return [item for part in rows for item in _xy_cut(part)]
    return sorted(items, key=lambda item: (item.box[1], item.box[0]))


def _side_by_side(columns: list[list[T]]) -> bool:
    """Whether some two neighbouring columns share part of their height."""
    spans = [(min(i.box[1] for i in part), max(i.box[3] for i in part)) for part in columns]
    return any(min(a[1], b[1]) > max(a[0], b[0]) for a, b in itertools.pairwise(spans))


def _gutters(items: list[T]) -> list[tuple[float, float]]:
    """The gaps between columns: x-ranges that next to nothing covers (by the height of what
    does: a short line centred across the gap does not close it), with columns either side."""
    if len(items) < 2:
        return []
    edges = sorted({item.box[0] for item in items} | {item.box[2] for item in items})
    cover = [
        sum(i.box[3] - i.box[1] for i in items if i.box[0] <= a and i.box[2] >= b)
        for a, b in itertools.pairwise(edges)
    ]
    low = 0.1 * max(cover)
    gutters = []
    start = None
    for (a, _), amount in zip(itertools.pairwise(edges), cover, strict=True):
        if amount <= low and start is None:
            start = a
        elif amount > low and start is not None:
            if start > edges[0]:  # columns on both sides
                gutters.append((start, a))
            start = None
    return gutters


def _split(items: list[T], axis: int) -> list[list[T]]:
    """The items in groups separated by gaps along ``axis`` (0: x, columns; 1: y, rows)."""
    parts: list[list[T]] = []
    end = float("-inf")
    for item in sorted(items, key=lambda item: item.box[axis]):
        if item.box[axis] >= end:
            parts.append([])
        parts[-1].append(item)
        end = max(end, item.box[axis + 2])
    return parts


def _by_region(blocks: list[Block], regions: list[list[float]]) -> list[Block]:
    """Regions in reading order, each one's blocks in reading order inside it."""
    members: dict[int, list[Block]] = {}
    for block in blocks:
        shares = [overlap(block.box, region) for region in regions]
        best = max(range(len(regions)), key=shares.__getitem__)
        members.setdefault(best if shares[best] > 0 else len(regions) + id(block), []).append(block)
    groups = [_Group(key, list(union([b.box for b in found])), found) for key, found in members.items()]
    ordered: list[Block] = []
    for number, group in enumerate(order_boxes(groups)):
        for block in order_boxes(group.blocks):
            block.group = number
            ordered.append(block)
    return ordered


class _Group:
    def __init__(self, key: int, box: list[float], blocks: list[Block]) -> None:
        self.key, self.box, self.blocks = key, box, blocks


def _captions_beside(ordered: list[Block]) -> list[Block]:
    """Each caption right after its picture or table (right before it, when it sits above);
    a caption with no picture near it stays where it was read."""
    pictures = [b for b in ordered if b.label in ("image", "table", "chart")]
    result: list[Block] = []
    placed: list[tuple[Block, Block]] = []  # (caption, its picture)
    for block in ordered:
        owner = None
        if block.label in CAPTIONS:
            owner = min(pictures, key=lambda p: _distance(p.box, block.box), default=None)
            if owner is not None and _distance(owner.box, block.box) > 4 * max(block.height, 1.0):
                owner = None
        if owner is None:
            result.append(block)
        else:
            placed.append((block, owner))
    for caption, owner in placed:
        at = result.index(owner)
        above = caption.box[3] <= (owner.box[1] + owner.box[3]) / 2
        result.insert(at if above else at + 1, caption)
    return result


def _distance(picture: list[float], caption: list[float]) -> float:
    """Vertical gap between two boxes that overlap horizontally (infinite when they do not)."""
    if min(picture[2], caption[2]) - max(picture[0], caption[0]) <= 0:
        return float("inf")
    return max(0.0, caption[1] - picture[3], picture[1] - caption[3])
