"""Straightening curved text (a seal's ring of characters) into one flat line to read.

A detected polygon that is close to its minimum-area rectangle (IoU at
least 0.7) is cropped as any line is. Otherwise its outline is split into
the two long sides -- the top and bottom edges of the text -- at its four
corners (the sharpest turns of the outline; the two shorter stretches
between neighbouring corners are the ends), each side resampled to
the same number of points, and the band between them unrolled: every pair
of neighbouring top/bottom points bounds a quadrilateral, warped by its
own homography into a rectangle as wide as the band is long there, and the
rectangles laid side by side. Characters that stood along an arc then
stand on one baseline, which is what the recognizer was trained on.
(PaddleX rectifies with a more elaborate camera model; its ONNX-only seal
detector cannot be loaded by PaddleX anyway, so the stage is judged by
what it reads, see tests/test_seals.py.)
"""

from __future__ import annotations

import cv2
import numpy as np

from pxserve.workers.ocr import lines

SEGMENTS = 14  # quadrilaterals along the band
RECTANGULAR_IOU = 0.7


def crop(image: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    points = polygon.reshape(-1, 2).astype(np.float64)
    rect, _ = lines.min_area_box(points.reshape(-1, 1, 2).astype(np.float32))
    if len(points) <= 4 or _iou(points, rect) >= RECTANGULAR_IOU:
        return lines.crop_line(image, rect)
    top, bottom = _sides(points)
    if top is None or bottom is None:
        return lines.crop_line(image, rect)
    return _unroll(image, _resample(top, SEGMENTS + 1), _resample(bottom, SEGMENTS + 1))


def _iou(polygon: np.ndarray, rect: np.ndarray) -> float:
    """IoU of two outlines, by filling both (a polygon need not be convex, nor simple)."""
    both = np.vstack([polygon, rect])
    origin = np.floor(both.min(axis=0))
    size = np.ceil(both.max(axis=0) - origin).astype(int) + 2
    masks = []
    for outline in (polygon, rect):
        mask = np.zeros((size[1], size[0]), np.uint8)
        cv2.fillPoly(mask, [np.round(outline - origin).astype(np.int32)], 1)
        masks.append(mask.astype(bool))
    union = np.logical_or(*masks).sum()
    return float(np.logical_and(*masks).sum() / union) if union else 1.0


def _sides(points: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The outline's two long sides, both running from the text's start to its end."""
    count = len(points)
    dense = _resample(np.vstack([points, points[:1]]), 4 * max(count, 16))[:-1]
    n = len(dense)
    before, after = dense - np.roll(dense, 1, axis=0), np.roll(dense, -1, axis=0) - dense
    cos = np.sum(before * after, axis=1) / (
        np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1) + 1e-9
    )
    turn = np.arccos(np.clip(cos, -1, 1))
    # The four corners: the sharpest turns, a few points apart at least (an end is short).
    corners: list[int] = []
    for i in np.argsort(-turn):
        if all(min((i - c) % n, (c - i) % n) > max(2, n // 80) for c in corners):
            corners.append(int(i))
        if len(corners) == 4:
            break
    if len(corners) < 4:
        return None, None
    c0, c1, c2, c3 = sorted(corners)
    # The ends are the two shorter stretches between neighbouring corners; the sides the others.
    if (c1 - c0) + (c3 - c2) <= (c2 - c1) + (n - c3 + c0):
        side1, side2 = dense[c1 : c2 + 1], np.vstack([dense[c3:], dense[: c0 + 1]])[::-1]
    else:
        side1, side2 = dense[c0 : c1 + 1], dense[c2 : c3 + 1][::-1]
    if len(side1) < 2 or len(side2) < 2:
        return None, None
    # The top edge is the one higher on the page (the outer edge of an arc over a seal).
    if np.mean(side1[:, 1]) > np.mean(side2[:, 1]):
        side1, side2 = side2, side1
    if side1[0, 0] > side1[-1, 0]:  # read left to right
        side1, side2 = side1[::-1], side2[::-1]
    return side1, side2


def _resample(path: np.ndarray, count: int) -> np.ndarray:
    """``count`` points evenly spaced along a polyline."""
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    if along[-1] == 0:
        return np.repeat(path[:1], count, axis=0)
    targets = np.linspace(0, along[-1], count)
    return np.stack([np.interp(targets, along, path[:, 0]), np.interp(targets, along, path[:, 1])], axis=1)


def _unroll(image: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    height = max(2, round(float(np.mean(np.linalg.norm(top - bottom, axis=1)))))
    pieces = []
    for i in range(len(top) - 1):
        quad = np.float32([top[i], top[i + 1], bottom[i + 1], bottom[i]])
        span = (np.linalg.norm(top[i + 1] - top[i]) + np.linalg.norm(bottom[i + 1] - bottom[i])) / 2
        width = max(1, round(float(span)))
        target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
        matrix = cv2.getPerspectiveTransform(quad, target)
        pieces.append(
            cv2.warpPerspective(
                image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        )
    return np.ascontiguousarray(np.hstack(pieces))
