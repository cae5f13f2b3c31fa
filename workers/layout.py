"""Layout detection with a PicoDet export whose heads are raw (no NMS in the graph).

The embedded CDLA model (workers/doc_models.py) takes the page resized to
800x608 (no aspect kept), ImageNet-normalised, RGB; for each of 4 strides
(8, 16, 32, 64) it gives class scores (10 classes, after the sigmoid) and a
distribution over 8 bins per box side (GFL). A box is the anchor point
(the cell's centre) minus/plus the expected distance per side, times the
stride; boxes above the threshold go through per-class NMS (IoU 0.5).
A PaddleX detection export (PP-DocLayout, NMS inside the graph) works too.
The result has PaddleX's layout shape: ``{"boxes": [{cls_id, label,
score, coordinate}]}``, coordinates in the page's pixels.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from pxserve.shared.model_dir import ModelDir
from pxserve.workers.backends import InferenceBackend

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
TOP_K = 1000  # candidates per stride before NMS


class LayoutDetector:
    def __init__(self, backend: InferenceBackend, model: ModelDir) -> None:
        self.backend = backend
        spec = model.spec
        self.labels = [str(label) for label in spec.get("label_list") or []]
        self.threshold = float(spec.get("draw_threshold", 0.5))
        post = model.post_process("PicoDetPostProcess")
        self.strides = [int(s) for s in post.get("strides", [8, 16, 32, 64])]
        self.nms_iou = float(post.get("nms_iou", 0.5))
        self.height, self.width = 800, 608
        self.mean, self.std = MEAN, STD
        for op in model.transform_ops:
            if "Resize" in op:
                self.height, self.width = (int(v) for v in op["Resize"]["target_size"])
            if "NormalizeImage" in op:
                norm = op["NormalizeImage"] or {}
                self.mean = np.array(norm.get("mean", MEAN), np.float32)
                self.std = np.array(norm.get("std", STD), np.float32)
        # A PaddleX detection export (PP-DocLayout) has NMS inside: image, im_shape and
        # scale_factor in, [class, score, x0, y0, x1, y1] rows out, in the page's pixels.
        self.exported_nms = "scale_factor" in backend.input_names

    def _exported(self, batch: np.ndarray, height: int, width: int, limit: float) -> dict[str, Any]:
        inputs = {
            "image": batch,
            "im_shape": np.array([[self.height, self.width]], np.float32),
            "scale_factor": np.array([[self.height / height, self.width / width]], np.float32),
        }
        rows = self.backend.run({k: v for k, v in inputs.items() if k in self.backend.input_names})[0]
        found = []
        for row in np.asarray(rows).reshape(-1, rows.shape[-1]):
            cls, score = int(row[0]), float(row[1])
            if cls < 0 or score <= limit:
                continue
            box = np.clip(row[2:6], 0, [width, height, width, height])
            label = self.labels[cls] if cls < len(self.labels) else str(cls)
            found.append(
                {"cls_id": cls, "label": label, "score": score, "coordinate": [float(v) for v in box]}
            )
        found.sort(key=lambda b: -b["score"])
        return {"boxes": found}

    def detect(self, image: np.ndarray, threshold: float | None = None) -> dict[str, Any]:
        height, width = image.shape[:2]
        resized = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_CUBIC)
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        batch = np.ascontiguousarray(((rgb - self.mean) / self.std).transpose(2, 0, 1)[None])
        limit = self.threshold if threshold is None else threshold
        if self.exported_nms:
            return self._exported(batch, height, width, limit)
        outputs = self.backend.run({self.backend.input_names[0]: batch})
        count = len(self.strides)
        scores, distributions = outputs[:count], outputs[count:]
        boxes, box_scores = [], []
        for stride, score, distribution in zip(self.strides, scores, distributions, strict=True):
            score, distribution = score[0], distribution[0]
            columns = math.ceil(self.width / stride)
            best = score.max(axis=1)
            top = np.argsort(-best)[:TOP_K]
            top = top[best[top] > limit]
            if not len(top):
                continue
            bins = distribution.shape[1] // 4
            logits = distribution[top].reshape(-1, 4, bins)
            weights = np.exp(logits - logits.max(axis=2, keepdims=True))
            weights /= weights.sum(axis=2, keepdims=True)
            distances = (weights * np.arange(bins)).sum(axis=2) * stride
            cx = (top % columns + 0.5) * stride
            cy = (top // columns + 0.5) * stride
            boxes.append(
                np.stack(
                    [cx - distances[:, 0], cy - distances[:, 1], cx + distances[:, 2], cy + distances[:, 3]],
                    axis=1,
                )
            )
            box_scores.append(score[top])
        if not boxes:
            return {"boxes": []}
        all_boxes, all_scores = np.concatenate(boxes), np.concatenate(box_scores)
        scale = np.array([width / self.width, height / self.height] * 2)
        found = []
        for cls in range(all_scores.shape[1]):
            members = np.where(all_scores[:, cls] > limit)[0]
            for i in _nms(all_boxes[members], all_scores[members, cls], self.nms_iou):
                index = members[i]
                box = np.clip(all_boxes[index] * scale, 0, [width, height, width, height])
                label = self.labels[cls] if cls < len(self.labels) else str(cls)
                found.append(
                    {
                        "cls_id": cls,
                        "label": label,
                        "score": float(all_scores[index, cls]),
                        "coordinate": [float(v) for v in box],
                    }
                )
        found.sort(key=lambda b: -b["score"])
        return {"boxes": found}


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores))
    kept: list[int] = []
    while order:
        i = order.pop(0)
        kept.append(int(i))
        if not order:
            break
        rest = np.array(order)
        left = np.maximum(boxes[i, 0], boxes[rest, 0])
        top = np.maximum(boxes[i, 1], boxes[rest, 1])
        right = np.minimum(boxes[i, 2], boxes[rest, 2])
        bottom = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
        area = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
        areas = (boxes[rest, 2] - boxes[rest, 0]) * (boxes[rest, 3] - boxes[rest, 1])
        overlap = inter / np.maximum(area + areas - inter, 1e-9)
        order = [int(j) for j, o in zip(rest, overlap, strict=True) if o <= iou]
    return kept


NMS_SAME_LABEL, NMS_OTHER_LABEL = 0.6, 0.98  # IoU above which layout_nms drops the lower box


PerClass = Any  # one value for every class, or {class id: value} (PaddleX's per-class settings)


def for_class(value: PerClass, cls_id: int, default: Any = None) -> Any:
    """A setting's value for one class: the dict's entry (or ``default``), or the one value."""
    if isinstance(value, dict):
        found = value.get(cls_id, value.get(str(cls_id)))
        return default if found is None else found
    return default if value is None else value


def lowest_threshold(threshold: PerClass, default: float) -> float:
    """What to detect at so that every class's own threshold can be applied after."""
    if isinstance(threshold, dict):
        return min([float(v) for v in threshold.values()] + [default])
    return default if threshold is None else float(threshold)


def refine(
    found: dict[str, Any],
    nms: bool,
    unclip_ratio: PerClass,
    merge_mode: PerClass,
    threshold: PerClass = None,
    unlisted_threshold: float = 0.0,
) -> dict[str, Any]:
    """PaddleX's per-request layout options, each one value or one per class id:
    ``threshold`` drops boxes scored below their class's (``unlisted_threshold`` for a class a
    per-class dict leaves out), ``nms`` drops a box overlapping a
    higher-scored one (IoU above 0.6 with the same label, 0.98 with another), ``unclip_ratio``
    grows each box about its centre (one factor, or width and height), and ``merge_mode``
    resolves boxes of one label that contain each other: ``large`` keeps the container,
    ``small`` the contained, ``union`` both."""
    boxes = sorted((dict(b) for b in found["boxes"]), key=lambda b: -b["score"])
    if isinstance(threshold, dict):
        boxes = [
            b for b in boxes if b["score"] >= float(for_class(threshold, b["cls_id"], unlisted_threshold))
        ]
    if nms:
        kept: list[dict[str, Any]] = []
        for box in boxes:
            if all(
                box_iou(box["coordinate"], other["coordinate"])
                <= (NMS_SAME_LABEL if box["label"] == other["label"] else NMS_OTHER_LABEL)
                for other in kept
            ):
                kept.append(box)
        boxes = kept
    for box in boxes:
        ratio = for_class(unclip_ratio, box["cls_id"])
        if ratio is None:
            continue
        ratio_w, ratio_h = ratio if isinstance(ratio, tuple | list) else (ratio, ratio)
        x0, y0, x1, y1 = box["coordinate"]
        cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * ratio_w, (y1 - y0) * ratio_h
        box["coordinate"] = [max(0.0, cx - w / 2), max(0.0, cy - h / 2), cx + w / 2, cy + h / 2]
    dropped = set()
    for i, inner in enumerate(boxes):
        for j, outer in enumerate(boxes):
            mode = for_class(merge_mode, inner["cls_id"])
            if (
                i != j
                and mode in ("large", "small")
                and inner["label"] == outer["label"]
                and _contains(outer["coordinate"], inner["coordinate"])
                and not (inner["coordinate"] == outer["coordinate"] and i < j)  # twins: keep one
            ):
                dropped.add(i if mode == "large" else j)
    return {"boxes": [b for k, b in enumerate(boxes) if k not in dropped]}


def configured(pipeline: Any, key: str, unclip_ratio: PerClass = None) -> dict[str, Any]:
    """A pipeline's layout settings for SubModules ``key``, as its config gives them (PaddleX's
    names and defaults): what a request's own settings are laid over."""
    return {
        "threshold": pipeline.module_setting(key, "threshold", None),
        "nms": bool(pipeline.module_setting(key, "layout_nms", True)),
        "unclip_ratio": pipeline.module_setting(key, "layout_unclip_ratio", unclip_ratio),
        "merge_mode": pipeline.module_setting(key, "layout_merge_bboxes_mode", "large"),
    }


def detect_refined(detector: LayoutDetector, image: np.ndarray, settings: dict[str, Any]) -> dict[str, Any]:
    """The page's layout with ``settings`` (see :func:`configured`) applied: detected at the lowest
    threshold any class asks for, then :func:`refine`."""
    threshold = settings["threshold"]
    found = detector.detect(image, lowest_threshold(threshold, detector.threshold))
    return refine(
        found,
        settings["nms"],
        settings["unclip_ratio"],
        settings["merge_mode"],
        threshold,
        detector.threshold,
    )


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two [x0, y0, x1, y1] boxes (0 when they do not overlap)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _contains(outer: list[float], inner: list[float]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]
