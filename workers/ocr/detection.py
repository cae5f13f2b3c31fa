"""Text detection (DB): resize for the detector, then turn its probability map into boxes.

PaddleX's ``DetResizeForTest`` + ``NormalizeImage`` before the model and
``DBPostProcess`` after it, with the same defaults and the same OpenCV
calls, so boxes land on the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper

# ImageNet statistics, applied to the BGR image channel by channel as PaddleOCR does.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MIN_BOX_SIDE = 3


@dataclass(frozen=True)
class DetectionParams:
    """PaddleX's ``text_det_params`` (also the request's textDet* fields)."""

    limit_side_len: int = 64
    limit_type: str = "min"
    thresh: float = 0.3
    max_side_limit: int = 4000
    box_thresh: float = 0.6
    unclip_ratio: float = 1.5
    max_candidates: int = 1000

    def as_result(self) -> dict[str, object]:
        """The keys PaddleX reports in ``prunedResult.text_det_params``."""
        return {
            "limit_side_len": self.limit_side_len,
            "limit_type": self.limit_type,
            "thresh": self.thresh,
            "max_side_limit": self.max_side_limit,
            "box_thresh": self.box_thresh,
            "unclip_ratio": self.unclip_ratio,
        }


def resized_shape(height: int, width: int, params: DetectionParams) -> tuple[int, int]:
    """The detector's input size: limit the sides as asked, then multiples of 32."""
    if params.limit_type == "max":
        ratio = (
            params.limit_side_len / max(height, width) if max(height, width) > params.limit_side_len else 1.0
        )
    elif params.limit_type == "min":
        ratio = (
            params.limit_side_len / min(height, width) if min(height, width) < params.limit_side_len else 1.0
        )
    else:  # "resize_long"
        ratio = params.limit_side_len / max(height, width)
    new_h, new_w = int(height * ratio), int(width * ratio)
    if max(new_h, new_w) > params.max_side_limit:
        ratio = params.max_side_limit / max(new_h, new_w)
        new_h, new_w = int(new_h * ratio), int(new_w * ratio)
    new_h = max(int(round(new_h / 32) * 32), 32)
    new_w = max(int(round(new_w / 32) * 32), 32)
    return new_h, new_w


def preprocess(image: np.ndarray, params: DetectionParams) -> np.ndarray:
    """BGR uint8 HxWx3 -> normalised float32 3xhxw at the detector's size."""
    new_h, new_w = resized_shape(image.shape[0], image.shape[1], params)
    resized = cv2.resize(image, (new_w, new_h))
    scaled = resized.astype(np.float32) * np.float32(1.0 / 255.0)
    return ((scaled - MEAN) / STD).transpose(2, 0, 1)


def boxes_from_map(prob: np.ndarray, height: int, width: int, params: DetectionParams) -> list[np.ndarray]:
    """DB post-processing of one probability map (h x w) into quadrilaterals in image pixels."""
    mask = (prob > params.thresh).astype(np.uint8) * 255
    map_h, map_w = prob.shape
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours[: params.max_candidates]:
        points, short_side = min_area_box(contour)
        if short_side < MIN_BOX_SIDE:
            continue
        if _box_score(prob, points) < params.box_thresh:
            continue
        expanded = _unclip(points, params.unclip_ratio)
        if expanded is None:
            continue
        box, short_side = min_area_box(expanded.reshape(-1, 1, 2))
        if short_side < MIN_BOX_SIDE + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / map_w * width), 0, width)
        box[:, 1] = np.clip(np.round(box[:, 1] / map_h * height), 0, height)
        boxes.append(box.astype(np.int32))
    return boxes


def polygons_from_map(prob: np.ndarray, height: int, width: int, params: DetectionParams) -> list[np.ndarray]:
    """DB post-processing into polygons (PaddleX's ``box_type: poly``, for curved seal text).

    Each contour simplified (0.2% of its length), scored over the polygon,
    grown by ``unclip_ratio`` as one piece (a contour that splits is dropped).
    """
    mask = (prob > params.thresh).astype(np.uint8) * 255
    map_h, map_w = prob.shape
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours[: params.max_candidates]:
        points = cv2.approxPolyDP(contour, 0.002 * cv2.arcLength(contour, True), True).reshape(-1, 2)
        if len(points) < 4 or _box_score(prob, points.astype(np.float32)) < params.box_thresh:
            continue
        expanded = _unclip(points.astype(np.float32), params.unclip_ratio, whole=True)
        if expanded is None:
            continue
        _, short_side = min_area_box(expanded.reshape(-1, 1, 2))
        if short_side < MIN_BOX_SIDE + 2:
            continue
        polygon = np.empty_like(expanded)
        polygon[:, 0] = np.clip(np.round(expanded[:, 0] / map_w * width), 0, width)
        polygon[:, 1] = np.clip(np.round(expanded[:, 1] / map_h * height), 0, height)
        polygons.append(polygon.astype(np.int32))
    return polygons


def sort_polygons(polygons: list[np.ndarray]) -> list[np.ndarray]:
    """Top to bottom by each polygon's highest point (PaddleX's order for seal text)."""
    return sorted(polygons, key=lambda p: int(p[:, 1].min()))


def min_area_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area rectangle's corners, clockwise from top-left, and its short side."""
    rect = cv2.minAreaRect(contour)
    points = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = (points[0], points[1]) if points[1][1] > points[0][1] else (points[1], points[0])
    right = (points[2], points[3]) if points[3][1] > points[2][1] else (points[3], points[2])
    top_left, bottom_left = left
    top_right, bottom_right = right
    box = np.array([top_left, top_right, bottom_right, bottom_left], dtype=np.float32)
    return box, min(rect[1])


def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the box (DB's "fast" score)."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = box.copy()
    shifted[:, 0] -= xmin
    shifted[:, 1] -= ymin
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float, whole: bool = False) -> np.ndarray | None:
    """Grow the box by area * ratio / perimeter, as DB's paper and PaddleOCR do.

    ``whole``: None unless the result is one polygon (a polygon that grows
    into several pieces is not one line of text)."""
    x, y = box[:, 0].astype(np.float64), box[:, 1].astype(np.float64)
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    perimeter = float(np.sum(np.hypot(x - np.roll(x, 1), y - np.roll(y, 1))))
    if perimeter == 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    expanded = offset.Execute(area * ratio / perimeter)
    if not expanded or (whole and len(expanded) > 1):
        return None
    return np.concatenate([np.asarray(path, dtype=np.float32) for path in expanded])


def sort_boxes(boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Reading order: top to bottom, and left to right within a line (10 px tolerance)."""
    ordered = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(ordered) - 1):
        for j in range(i, -1, -1):
            same_line = abs(ordered[j + 1][0][1] - ordered[j][0][1]) < 10
            if same_line and ordered[j + 1][0][0] < ordered[j][0][0]:
                ordered[j], ordered[j + 1] = ordered[j + 1], ordered[j]
            else:
                break
    return ordered


def axis_aligned(polys: list[np.ndarray]) -> list[list[int]]:
    """``rec_boxes``: each polygon's [x_min, y_min, x_max, y_max]."""
    return [[int(p[:, 0].min()), int(p[:, 1].min()), int(p[:, 0].max()), int(p[:, 1].max())] for p in polys]


def batch_for_detection(shapes: list[tuple[int, int]], max_pixels: int) -> list[list[int]]:
    """Indices grouped by input shape, each group at most ``max_pixels`` (or one input).

    Inputs of one size run as one call, but the detector's memory grows with
    the pixels of a call (about 170 MB per million pixels, either engine), so
    a call is bounded by pixels, never by a count: small photos still batch,
    while pages run one or two at a time.
    """
    groups: dict[tuple[int, int], list[list[int]]] = {}
    for i, shape in enumerate(shapes):
        chunks = groups.setdefault(shape, [[]])
        pixels = shape[0] * shape[1]
        if chunks[-1] and (len(chunks[-1]) + 1) * pixels > max_pixels:
            chunks.append([])
        chunks[-1].append(i)
    return [chunk for chunks in groups.values() for chunk in chunks]
