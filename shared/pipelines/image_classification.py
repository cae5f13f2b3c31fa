"""Image classification, served at ``POST /image-classification`` as PaddleX does.

Request: ``image`` (Base64), ``topk``, ``visualize``, and the older
``inferenceParams.topK``. Result: ``categories`` (id, name, score; best
first) and ``image`` (the input with the top labels drawn, Base64 JPEG, or
null when visualize is off).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pybase64
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from pxserve.shared.errors import one_line
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import Outcome, Task
from pxserve.shared.pipelines import LoadedModel, Pipeline, RunnerContext

log = logging.getLogger("pxserve.pipelines.image_classification")

if TYPE_CHECKING:
    from PIL import Image

    from pxserve.shared.model_dir import ModelDir
    from pxserve.workers.backends import InferenceBackend

# Visualizations larger than this are scaled down so results stay small.
MAX_VISUAL_SIDE = 2048


class InferenceParams(BaseModel):
    model_config = ConfigDict(extra="ignore")
    topK: StrictInt | None = Field(default=None, gt=0)


class ImageClassificationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str = Field(
        description="Base64 of the image file's bytes, or an http(s) URL where URL inputs are enabled",
        json_schema_extra={"minLength": 1, "contentEncoding": "base64"},
    )
    topk: StrictInt | None = Field(default=None, gt=0)
    visualize: StrictBool | None = None
    inferenceParams: InferenceParams | None = None


class Category(BaseModel):
    id: int
    name: str
    score: float


class ImageClassificationResult(BaseModel):
    categories: list[Category] = Field(description="Best first")
    image: str | None = Field(description="Base64 JPEG of the input with the labels drawn, or null")


class ImageClassification(Pipeline):
    name = "image_classification"
    route = "/image-classification"
    sub_module = "ImageClassification"
    summary = "Classify one image (PaddleX image classification API)"
    request_model = ImageClassificationRequest
    result_model = ImageClassificationResult
    embedded_models = {"EfficientNet-Lite0": "pxserve.workers.default_model"}

    async def parse(self, request: ImageClassificationRequest, images: ImageLoader) -> Task:
        image = await images.load(request.image)
        topk = request.topk
        if topk is None and request.inferenceParams is not None:
            topk = request.inferenceParams.topK
        if topk is None:
            topk = self.model_settings.topk
        visualize = self.config.Serving.visualize if request.visualize is None else request.visualize
        return Task(0, {"topk": topk, "visualize": visualize}, image)

    def create_runner(self, models: dict[str, LoadedModel], context: RunnerContext) -> ClassificationRunner:
        loaded = models[self.sub_module]
        return ClassificationRunner(loaded.model, loaded.backend)


class ClassificationRunner:
    """Decode, preprocess, infer as one batch, then Topk per request."""

    def __init__(self, model: ModelDir, backend: InferenceBackend) -> None:
        from pxserve.workers.preprocess import Preprocessor

        self.backend = backend
        self.preprocess = Preprocessor(model.transform_ops)
        topk = model.post_process("Topk")
        self.default_topk = int(topk.get("topk") or 5)
        self.labels: list[str] = [str(name) for name in topk.get("label_list") or []]

    def run(self, tasks: list[Task]) -> list[Outcome]:
        from pxserve.workers.preprocess import ImageDecodeError

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
    from pxserve.workers.preprocess import decode_image

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


PIPELINE = ImageClassification
