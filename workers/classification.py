"""Image classification's runner: decode, preprocess, infer as one batch, then Topk per request."""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import pybase64
from PIL import Image

from pxserve.shared.errors import one_line
from pxserve.shared.messages import Outcome, Task
from pxserve.shared.pipelines import LoadedModel, RunnerContext
from pxserve.shared.pipelines.image_classification import ImageClassification
from pxserve.workers.preprocess import ImageDecodeError, Preprocessor, decode_image

log = logging.getLogger("pxserve.pipelines.image_classification")

# Visualizations larger than this are scaled down so results stay small.
MAX_VISUAL_SIDE = 2048


class ClassificationRunner:
    """Decode, preprocess, infer as one batch, then Topk per request."""

    def __init__(
        self, models: dict[str, LoadedModel], pipeline: ImageClassification, context: RunnerContext
    ) -> None:
        loaded = models[pipeline.sub_module]
        model, backend = loaded.model, loaded.backend
        self.backend = backend
        self.preprocess = Preprocessor(model.transform_ops)
        topk = model.post_process("Topk")
        self.default_topk = int(topk.get("topk") or 5)
        self.labels: list[str] = [str(name) for name in topk.get("label_list") or []]

    def run(self, tasks: list[Task]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(tasks)
        images: dict[int, Image.Image] = {}
        arrays: list[np.ndarray] = []
        for i, task in enumerate(tasks):
            try:
                images[i] = image = _decode(task.image, self.preprocess.min_source_size)
                arrays.append(self.preprocess(image))
            except ImageDecodeError as exc:
                outcomes[i] = Outcome.failure(task.request_id, 422, f"image: {exc}")
        ready = list(images)
        if ready:
            for i, scores in zip(ready, self._infer(np.stack(arrays), ready, tasks), strict=True):
                task = tasks[i]
                if isinstance(scores, Outcome):
                    outcomes[i] = scores
                    continue
                outcomes[i] = Outcome.success(task.request_id, self._result(scores, images[i], task.params))
        return [o for o in outcomes if o is not None]

    def _infer(self, batch: np.ndarray, ready: list[int], tasks: list[Task]) -> list[np.ndarray | Outcome]:
        """Infer the batch; if it fails, retry one by one so one bad input fails alone."""
        try:
            return list(self.backend.infer(batch))
        except Exception as exc:
            if len(ready) == 1:
                log.warning("inference failed for one image: %s", one_line(exc))
                return [Outcome.failure(tasks[ready[0]].request_id, 500, "inference failed for this image")]
            log.warning("a batch of %d failed (%s); retrying one by one", len(ready), one_line(exc))
        results: list[np.ndarray | Outcome] = []
        for row, i in enumerate(ready):
            try:
                results.append(self.backend.infer(batch[row : row + 1])[0])
            except Exception as exc:
                log.warning("inference failed for one image: %s", one_line(exc))
                results.append(Outcome.failure(tasks[i].request_id, 500, "inference failed for this image"))
        return results

    def _label(self, class_id: int) -> str:
        return self.labels[class_id] if class_id < len(self.labels) else str(int(class_id))

    def _result(self, scores: np.ndarray, image: Image.Image, params: dict[str, Any]) -> dict[str, Any]:
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        k = min(int(params.get("topk") or self.default_topk), scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        categories = [{"id": int(i), "name": self._label(i), "score": float(scores[i])} for i in top]
        visual = _render(image, categories) if params.get("visualize") else None
        return {"categories": categories, "image": visual}


def _decode(data: bytes | memoryview, min_size: Any) -> Image.Image:
    return decode_image(data, min_size)


def _render(image: Image.Image, categories: list[dict[str, Any]]) -> str:
    """The input with the top labels drawn at its top-left, as Base64 JPEG."""
    from PIL import ImageDraw, ImageFont

    canvas = image.copy()
    canvas.thumbnail((MAX_VISUAL_SIDE, MAX_VISUAL_SIDE))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(12, min(canvas.size) // 24))
    y = 4
    for category in categories[:5]:
        text = f"{category['name'].split(',')[0]} {category['score']:.2f}"
        left, top, right, bottom = draw.textbbox((6, y), text, font=font)
        draw.rectangle((left - 3, top - 2, right + 3, bottom + 2), fill=(0, 0, 0))
        draw.text((6, y), text, fill=(255, 255, 0), font=font)
        y = bottom + 6
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=85)
    return pybase64.b64encode(buffer.getvalue()).decode("ascii")
