"""Table structure recognition (SLANet / SLANet_plus): a table image -> HTML tokens and cells.

As PaddleX's table structure predictor does it: the image (BGR, as read)
is resized so its long side is 488, normalised with ImageNet's mean and
std, padded with zeros to 488x488; the model emits, per step, a token
distribution and the cell's 8 box coordinates (0..1 of the padded square).
Decoding takes the most likely token until ``eos``; each cell token
(``<td>``, ``<td``, ``<td></td>``) keeps its box, scaled back to the input.

Every input has the same padded shape, so a batch of tables from several
requests is one model call.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pxserve.shared.model_dir import ModelDir
from pxserve.workers.backends import InferenceBackend

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
CELL_TOKENS = ("<td>", "<td", "<td></td>")
HTML_HEAD, HTML_TAIL = ["<html>", "<body>", "<table>"], ["</table>", "</body>", "</html>"]


@dataclass(frozen=True)
class Structure:
    tokens: list[str]  # the HTML tokens, wrapped in html/body/table
    cells: list[list[int]]  # per cell token: 8 coordinates (x, y four times), in the input's pixels
    score: float


class TableStructureModel:
    def __init__(self, backend: InferenceBackend, model: ModelDir) -> None:
        self.backend = backend
        self.side = 488
        for op in model.transform_ops:
            if "ResizeTableImage" in op:
                self.side = int((op["ResizeTableImage"] or {}).get("max_len", 488))
        post = model.post_process("TableLabelDecode")
        tokens = [str(t) for t in post.get("character_dict") or []]
        if not tokens:
            raise ValueError(f"{model.path}/inference.yml has no TableLabelDecode.character_dict")
        if post.get("merge_no_span_structure", True):
            if "<td></td>" not in tokens:
                tokens.append("<td></td>")
            if "<td>" in tokens:
                tokens.remove("<td>")
        self.tokens = ["sos", *tokens, "eos"]
        self.end = len(self.tokens) - 1
        self.legacy_scale = model.model_name == "SLANet"  # SLANet's boxes are relative to the input

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        scale = self.side / max(height, width)
        resized = cv2.resize(
            image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR
        )
        normalised = (resized.astype(np.float32) / 255.0 - MEAN) / STD
        padded = np.zeros((self.side, self.side, 3), np.float32)
        padded[: normalised.shape[0], : normalised.shape[1]] = normalised
        return padded.transpose(2, 0, 1)

    def predict(self, images: list[np.ndarray]) -> list[Structure]:
        if not images:
            return []
        batch = np.stack([self.preprocess(image) for image in images])
        outputs = self.backend.run({self.backend.input_names[0]: batch})
        boxes, probabilities = _by_width(outputs)
        return [self._decode(probabilities[i], boxes[i], image.shape[:2]) for i, image in enumerate(images)]

    def _decode(self, probabilities: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> Structure:
        height, width = shape
        if self.legacy_scale:
            x_scale, y_scale = float(width), float(height)
        else:
            ratio = min(self.side / width, self.side / height)
            x_scale = y_scale = self.side / ratio
        ids, scores = probabilities.argmax(axis=1), probabilities.max(axis=1)
        tokens, kept, cells = [], [], []
        for step, token_id in enumerate(ids):
            token_id = int(token_id)
            if step > 0 and token_id == self.end:
                break
            if token_id in (0, self.end):
                continue
            token = self.tokens[token_id]
            if token in CELL_TOKENS:
                box = boxes[step].astype(np.float64) * np.array([x_scale, y_scale] * 4)
                cells.append(box.astype(int).tolist())
            tokens.append(token)
            kept.append(float(scores[step]))
        score = float(np.mean(kept)) if kept else 0.0
        return Structure([*HTML_HEAD, *tokens, *HTML_TAIL], cells, score)


def _by_width(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, token probabilities): the exports name them differently; the boxes have 8 columns."""
    first, second = outputs[0], outputs[1]
    return (first, second) if first.shape[-1] == 8 else (second, first)
