"""Image classification, served at ``POST /image-classification`` as PaddleX does.

Request: ``image`` (Base64), ``topk``, ``visualize``, and the older
``inferenceParams.topK``. Result: ``categories`` (id, name, score; best
first) and ``image`` (the input with the top labels drawn, Base64 JPEG, or
null when visualize is off).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import Task
from pxserve.shared.pipelines import Pipeline


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
    runner = "pxserve.workers.classification:ClassificationRunner"
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


PIPELINE = ImageClassification
