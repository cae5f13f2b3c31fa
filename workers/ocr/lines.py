"""Text lines: crop them out of the page, set them upright, read them.

Cropping and recognition follow PaddleX (perspective warp of each box,
height 48, aspect kept, padded per batch to the widest line, greedy CTC).

The orientation stage deliberately does not: PaddleX runs the line
classifier as a generic image classifier, squeezing a whole line into
192x48, and flips any line the squeezed picture calls upside down. Long
lines squeezed that far look alike both ways up, so it turns 10-32% of
upright English lines over and ruins them. Here each line is resized to
the classifier's height keeping its aspect, up to three windows of the
classifier's width are read (its start, middle and end), their
probabilities averaged, and a line is turned only when "180" wins with
more than ``FLIP_THRESHOLD``, as PaddleOCR's own classifier does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pxserve.workers.ocr.detection import min_area_box

FLIP_THRESHOLD = 0.9
TALL_RATIO = 1.5  # a crop this much taller than wide is vertical text: turn it to read


def crop_line(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The quadrilateral's pixels, warped to an upright rectangle."""
    points = box.astype(np.float32)
    width = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
    height = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points, target)
    crop = cv2.warpPerspective(
        image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if crop.shape[0] / crop.shape[1] >= TALL_RATIO:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


def crop_min_area(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """PaddleX's crop for quadrilateral boxes: square the box up first, then warp."""
    rect_box, _ = min_area_box(box.reshape(-1, 1, 2).astype(np.int32))
    return crop_line(image, rect_box)


@dataclass(frozen=True)
class Normalization:
    """x * scale, minus mean, over std, per channel (from the model's inference.yml)."""

    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return ((pixels.astype(np.float32) * np.float32(self.scale) - mean) / std).transpose(2, 0, 1)


MAX_LINE_WIDTH = 3200  # PaddleX squeezes longer lines to this width


def resize_to_height(crop: np.ndarray, height: int, max_width: int) -> np.ndarray:
    """Height ``height``, aspect kept (rounded up), at most ``max_width`` wide."""
    ratio = crop.shape[1] / float(crop.shape[0])
    width = min(max_width, math.ceil(height * ratio))
    return cv2.resize(crop, (max(width, 1), height))


def own_width(crop: np.ndarray, height: int, base_width: int) -> int:
    """The width PaddleX gives one line before batching: its aspect, at least the base."""
    ratio = max(base_width / height, crop.shape[1] / float(crop.shape[0]))
    return min(int(height * ratio), MAX_LINE_WIDTH)


def padded_widths(crops: list[np.ndarray], group_size: int, height: int, base_width: int) -> list[int]:
    """The width each line is padded to before recognition, as PaddleX decides it.

    PaddleX sorts a page's lines by aspect ratio, recognizes them in groups
    of ``batch_size``, and pads each group to its widest line (never less
    than ``base_width``). The padding changes what the recognizer reads (it
    attends over the whole width), so to return PaddleX's text each line
    must see exactly that width, whichever lines it is batched with here.
    """
    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / float(crops[i].shape[0]))
    widths = [0] * len(crops)
    for start in range(0, len(order), max(group_size, 1)):
        group = order[start : start + group_size]
        width = max(own_width(crops[i], height, base_width) for i in group)
        for i in group:
            widths[i] = width
    return widths


def recognition_input(crops: list[np.ndarray], width: int, height: int, base_width: int) -> np.ndarray:
    """Lines as PaddleX feeds them: resized to ``height`` (a line wider than 3200 px
    squeezed to it), scaled to [-1, 1], zero-padded on the right to ``width``."""
    batch = np.zeros((len(crops), 3, height, width), dtype=np.float32)
    for i, crop in enumerate(crops):
        limit = own_width(crop, height, base_width)
        if limit >= MAX_LINE_WIDTH:
            resized = cv2.resize(crop, (MAX_LINE_WIDTH, height))
        else:
            resized = resize_to_height(crop, height, limit)
        pixels = resized.astype(np.float32).transpose(2, 0, 1) / 255
        pixels -= 0.5
        pixels /= 0.5
        batch[i, :, :, : pixels.shape[2]] = pixels
    return batch


def orientation_windows(crop: np.ndarray, height: int, width: int, norm: Normalization) -> np.ndarray:
    """Up to three classifier inputs from one line: its start, middle and end."""
    resized = resize_to_height(crop, height, 1 << 30)
    if resized.shape[1] <= width:
        window = np.zeros((3, height, width), dtype=np.float32)
        window[:, :, : resized.shape[1]] = norm(resized)
        return window[None]
    last = resized.shape[1] - width
    starts = sorted({0, last // 2, last})
    return np.stack([norm(resized[:, s : s + width]) for s in starts])


def flip_decisions(probabilities: np.ndarray, owners: list[int], count: int, flip_index: int) -> list[bool]:
    """Average each line's windows; turn it when "180" is confidently ahead."""
    sums = np.zeros(count, dtype=np.float64)
    seen = np.zeros(count, dtype=np.int64)
    for row, owner in enumerate(owners):
        sums[owner] += float(probabilities[row, flip_index])
        seen[owner] += 1
    return [bool(seen[i] and sums[i] / seen[i] > FLIP_THRESHOLD) for i in range(count)]


@dataclass(frozen=True)
class Decoded:
    text: str
    score: float
    columns: list[int]  # the output step each character of ``text`` was read at
    steps: int  # output steps across the padded input


class CtcDecoder:
    """Greedy CTC: best class per step, repeats merged, blanks dropped; score = mean kept probability."""

    def __init__(self, characters: list[str], use_space_char: bool = True) -> None:
        self.characters = ["blank", *characters] + ([" "] if use_space_char else [])

    def __call__(self, probs: np.ndarray) -> list[Decoded]:
        best = probs.argmax(axis=2)
        best_prob = probs.max(axis=2)
        results = []
        for indices, scores in zip(best, best_prob, strict=True):
            keep = np.ones(len(indices), dtype=bool)
            keep[1:] = indices[1:] != indices[:-1]
            keep &= indices != 0
            columns = [int(c) for c in np.flatnonzero(keep) if indices[c] < len(self.characters)]
            text = "".join(self.characters[indices[c]] for c in columns)
            kept = scores[keep]
            results.append(Decoded(text, float(kept.mean()) if kept.size else 0.0, columns, len(indices)))
        return results


def content_width(crop: np.ndarray, height: int, base_width: int) -> int:
    """How wide the line itself is in the recognizer's input (the rest is padding)."""
    limit = own_width(crop, height, base_width)
    if limit >= MAX_LINE_WIDTH:
        return MAX_LINE_WIDTH
    return max(1, min(limit, math.ceil(height * crop.shape[1] / float(crop.shape[0]))))


def is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF
        or 0x3400 <= code <= 0x9FFF
        or 0xAC00 <= code <= 0xD7AF
        or 0xF900 <= code <= 0xFAFF
    )


def words(decoded: Decoded, padded_width: int, line_width: int) -> list[tuple[str, float, float]]:
    """``returnWordBox``: each word with where it starts and ends along the line (0..1).

    Runs of letters, digits and punctuation are words, spaces separate them,
    and each CJK character is a word of its own, as PaddleX splits them. A
    character read at output step c covers c..c+1 of ``steps`` across the
    padded input, of which the line fills ``line_width`` pixels.
    """
    scale = padded_width / decoded.steps / line_width
    found: list[tuple[str, float, float]] = []
    current, first, last = "", 0, 0
    for char, column in zip(decoded.text, decoded.columns, strict=True):
        if char.isspace() or is_cjk(char):
            if current:
                found.append((current, first * scale, (last + 1) * scale))
                current = ""
            if is_cjk(char):
                found.append((char, column * scale, (column + 1) * scale))
            continue
        if not current:
            first = column
        current, last = current + char, column
    if current:
        found.append((current, first * scale, (last + 1) * scale))
    return [(w, min(max(a, 0.0), 1.0), min(max(b, 0.0), 1.0)) for w, a, b in found]


def reading_frame(poly: np.ndarray) -> np.ndarray:
    """The line's box squared up as it was cropped: corners clockwise from top-left."""
    box, _ = min_area_box(poly.reshape(-1, 1, 2).astype(np.int32))
    return box


def word_quad(frame: np.ndarray, start: float, end: float, angle: int) -> list[list[int]]:
    """The part of a line's frame between two fractions of its reading direction."""
    p0, p1, p2, p3 = frame
    width, height = np.linalg.norm(p0 - p1), np.linalg.norm(p0 - p3)
    if angle == 180:
        start, end = 1.0 - end, 1.0 - start
    if width > 0 and height / width >= TALL_RATIO:  # read top to bottom (the crop was turned)
        a, b, c, d = (
            p0 + (p3 - p0) * start,
            p1 + (p2 - p1) * start,
            p1 + (p2 - p1) * end,
            p0 + (p3 - p0) * end,
        )
    else:
        a, b, c, d = (
            p0 + (p1 - p0) * start,
            p0 + (p1 - p0) * end,
            p3 + (p2 - p3) * end,
            p3 + (p2 - p3) * start,
        )
    return [[round(float(x)), round(float(y))] for x, y in (a, b, c, d)]
