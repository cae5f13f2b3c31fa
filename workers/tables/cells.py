"""Putting text into a table's cells: which OCR lines fall in the table, which cell each
belongs to, and the HTML with the text in it -- PaddleX 3.4.3's table_recognition rules.

* A line belongs to a table when its box overlaps the table's by more than
  3 px each way.
* A line goes to the cell with the highest IoU, ties (and no overlap) broken
  by the smallest L1 distance between the boxes' corners plus the nearer corner.
* A cell with several lines joins them with single spaces, dropping ``<b>``
  wrappers but keeping one around the whole cell when the first line had one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pxserve.workers.layout import box_iou


def boxes_of(points: list[list[int]]) -> list[list[int]]:
    """Axis-aligned [x0, y0, x1, y1] of each 8-coordinate cell."""
    boxes = []
    for cell in points:
        xs, ys = cell[0::2], cell[1::2]
        boxes.append([min(xs), min(ys), max(xs), max(ys)])
    return boxes


def lines_in(ocr: dict[str, Any], region: list[float]) -> dict[str, list[Any]]:
    """The OCR lines (polys, texts, scores, boxes) whose boxes overlap ``region``."""
    boxes = np.asarray(ocr.get("rec_boxes") or [], dtype=np.float64).reshape(-1, 4)
    keep: list[int] = []
    if len(boxes):
        width = np.minimum(region[2], boxes[:, 2]) - np.maximum(region[0], boxes[:, 0])
        height = np.minimum(region[3], boxes[:, 3]) - np.maximum(region[1], boxes[:, 1])
        keep = [int(i) for i in np.where((width > 3) & (height > 3))[0]]
    return {
        "rec_polys": [ocr["rec_polys"][i] for i in keep],
        "rec_texts": [ocr["rec_texts"][i] for i in keep],
        "rec_scores": [ocr["rec_scores"][i] for i in keep],
        "rec_boxes": [ocr["rec_boxes"][i] for i in keep],
    }


def _distance(cell: list[float], line: list[float]) -> float:
    near = abs(line[0] - cell[0]) + abs(line[1] - cell[1])
    far = abs(line[2] - cell[2]) + abs(line[3] - cell[3])
    return near + far + min(near, far)


def match(cells: list[list[int]], lines: list[list[float]]) -> dict[int, list[int]]:
    """Cell index -> indices of the lines that belong to it, in the lines' order."""
    matched: dict[int, list[int]] = {}
    if not cells:
        return matched
    for i, line in enumerate(lines):
        line = [float(v) for v in np.asarray(line, dtype=np.float32)]
        keys = [(1.0 - box_iou(cell, line), _distance(cell, line)) for cell in cells]
        best = keys.index(min(keys))
        matched.setdefault(best, []).append(i)
    return matched


def _cell_text(texts: list[str]) -> str:
    if len(texts) == 1:
        return texts[0]
    parts = []
    for i, content in enumerate(texts):
        if not content:
            continue
        if content[0] == " ":
            content = content[1:]
        if "<b>" in content:
            content = content[3:]
        if "</b>" in content:
            content = content[:-4]
        if not content:
            continue
        if i != len(texts) - 1 and content[-1] != " ":
            content += " "
        parts.append(content)
    return "".join(parts)


def html(tokens: list[str], matched: dict[int, list[int]], texts: list[str]) -> str:
    """The table's HTML: its structure tokens with each cell's text inside."""
    out = list(tokens[:3])
    cell = 0
    for token in tokens[3:-3]:
        if "</td>" not in token:
            out.append(token)
            continue
        if token == "<td></td>":
            out.append("<td>")
        if cell in matched:
            members = [texts[i] for i in matched[cell]]
            bold = len(members) > 1 and "<b>" in members[0]
            out.append(("<b>" if bold else "") + _cell_text(members) + ("</b>" if bold else ""))
        out.append("</td>" if token == "<td></td>" else token)
        cell += 1
    out.extend(tokens[-3:])
    return "".join(out)
