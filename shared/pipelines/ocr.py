"""PaddleX's OCR pipeline, served at ``POST /ocr`` as PaddleX does.

Models (SubModules): TextDetection, TextRecognition and, when configured,
TextLineOrientation. The embedded default reader is PaddleOCR's PP-OCRv6
small (configs/OCR.yaml; PP-OCRv5 mobile, PP-OCRv6 small and the seal
detector: workers/doc_models.py); PP-OCRv4 mobile and the mobile line
orientation classifier: workers/ocr_models.py. ``SubPipelines.DocPreprocessor`` turns
pages upright first when asked; ``text_type: seal`` reads curved text
(polygons, straightened). Request: ``file`` (Base64 or URL) and ``fileType``
(0 PDF, 1 image, or left out: told apart by the bytes), the stage switches
and detection/recognition settings; every one is honoured per request.
Result: ``ocrResults`` (one per image or PDF page, each with PaddleX's
``prunedResult``) and ``dataInfo``. The work itself is in workers/ocr/.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from pxserve.shared.config import ConfigError
from pxserve.shared.errors import invalid
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import Task
from pxserve.shared.pipelines import Pipeline
from pxserve.shared.pipelines._document_requests import DetectionOverrides, FileRequest, TextDetectionFields
from pxserve.shared.pipelines.doc_preprocessor import SUB_PIPELINE, check_switches

log = logging.getLogger("pxserve.pipelines.ocr")

DETECTION, RECOGNITION, ORIENTATION = "TextDetection", "TextRecognition", "TextLineOrientation"
TEXT_TYPES = ("general", "seal")  # seal: curved text, detected as polygons and straightened
DETECTION_KEYS = ("limit_side_len", "limit_type", "max_side_limit", "thresh", "box_thresh", "unclip_ratio")


class OcrRequest(FileRequest, TextDetectionFields):
    useTextlineOrientation: StrictBool | None = None
    returnWordBox: StrictBool | None = None
    # pxserve's extension: true reads a PDF page's own text where it can be trusted instead of
    # OCR (default: the config's use_pdf_text_layer, off here, as PaddleX reads every page by OCR).
    usePdfTextLayer: StrictBool | None = None


class OcrParams(BaseModel):
    """Parameters of the OCR stages that read an input (image, pdf, page): one request's settings.

    Built by :meth:`Ocr.parse`, or by a pipeline that uses OCR as a
    sub-pipeline; None means "as the (sub-)pipeline's config says".
    """

    model_config = ConfigDict(extra="forbid")

    det: DetectionOverrides = Field(default_factory=DetectionOverrides)
    doc_orientation: bool | None = None  # useDocOrientationClassify (SubPipelines.DocPreprocessor)
    doc_unwarping: bool | None = None
    orientation: bool | None = None
    score_thresh: float | None = None
    word_box: bool | None = None
    visualize: bool | None = None
    max_pages: int | None = None  # pdf: pages to read (the config's max_pdf_pages when None)
    page: int | None = None  # page: which page of the PDF payload
    text_layer: bool | None = None  # usePdfTextLayer
    text_layer_res: dict[str, Any] | None = None  # set by the page stage: what the answer says of it


class TextDetParams(BaseModel):
    limit_side_len: int
    limit_type: str
    thresh: float
    max_side_limit: int
    box_thresh: float
    unclip_ratio: float


class PrunedResult(BaseModel):
    model_settings: dict[str, bool]
    doc_preprocessor_res: dict[str, Any] | None = Field(
        default=None, description="Present when the page was turned upright first: model_settings, angle"
    )
    dt_polys: list[list[list[int]]] = Field(description="Detected quadrilaterals, in reading order")
    text_det_params: TextDetParams
    text_type: str
    textline_orientation_angles: list[int] | None = Field(
        default=None, description="0 or 180 per detected line; -1 when off; absent when no line was found"
    )
    text_rec_score_thresh: float
    return_word_box: bool
    rec_texts: list[str]
    rec_scores: list[float]
    rec_polys: list[list[list[int]]]
    rec_boxes: list[list[int]] = Field(description="[x_min, y_min, x_max, y_max] of each rec_polys entry")
    text_layer_res: dict[str, Any] | None = Field(
        default=None,
        description="pxserve's, with usePdfTextLayer: whether a PDF page's own text was read (used), "
        "and if not, why (reason)",
    )


class OcrPageResult(BaseModel):
    prunedResult: PrunedResult
    ocrImage: str | None = Field(description="Base64 JPEG: boxes and text drawn, or null")
    docPreprocessingImage: str | None
    inputImage: str | None


class OcrResult(BaseModel):
    ocrResults: list[OcrPageResult] = Field(description="One per image, or per PDF page")
    dataInfo: dict[str, Any] = Field(description="Image: width, height, type; PDF: numPages, pages, type")


class Ocr(Pipeline):
    name = "OCR"
    route = "/ocr"
    runner = "pxserve.workers.ocr.runner:OcrRunner"
    summary = "Read the text of an image or PDF (PaddleX OCR API)"
    request_model = OcrRequest
    result_model = OcrResult
    pages_field = "ocrResults"
    embedded_models = {
        "PP-OCRv4_mobile_det": "pxserve.workers.ocr_models",
        "PP-OCRv4_mobile_rec": "pxserve.workers.ocr_models",
        "ch_ppocr_mobile_v2.0_cls": "pxserve.workers.ocr_models",
        "PP-OCRv4_mobile_seal_det": "pxserve.workers.doc_models",
        "PP-OCRv5_mobile_det": "pxserve.workers.doc_models",
        "PP-OCRv5_mobile_rec": "pxserve.workers.doc_models",
        "PP-OCRv6_small_det": "pxserve.workers.doc_models",
        "PP-OCRv6_small_rec": "pxserve.workers.doc_models",
    }

    def model_keys(self) -> list[str]:
        keys = [DETECTION, RECOGNITION]
        return [*keys, ORIENTATION] if self.has_orientation else keys

    @property
    def has_orientation(self) -> bool:
        return ORIENTATION in self.config.SubModules

    def module_setting(self, key: str, name: str, default: Any) -> Any:
        """As the base's, and ``batch_size`` from its own field, where PaddleX's configs put it."""
        module = self.config.SubModules.get(key)
        if name == "batch_size" and module is not None and module.batch_size:
            return module.batch_size
        return super().module_setting(key, name, default)

    def check_startup(self) -> None:
        for key in (DETECTION, RECOGNITION):
            if key not in self.config.SubModules:
                raise ConfigError(f"{self.config.source}: the OCR pipeline needs SubModules.{key}")
        extra = self.config.model_extra or {}
        if extra.get("text_type", "general") not in TEXT_TYPES:
            raise ConfigError(f"{self.config.source}: text_type must be one of {', '.join(TEXT_TYPES)}")
        if extra.get("use_textline_orientation") and not self.has_orientation:
            raise ConfigError(
                f"{self.config.source}: use_textline_orientation is true but SubModules has no {ORIENTATION}"
            )
        if extra.get("use_doc_preprocessor") and SUB_PIPELINE not in self.sub_pipelines:
            raise ConfigError(
                f"{self.config.source}: use_doc_preprocessor is true but SubPipelines has no {SUB_PIPELINE}"
            )

    async def parse(self, request: OcrRequest, images: ImageLoader) -> Task:
        check_switches(self, request.useDocOrientationClassify, request.useDocUnwarping)
        if request.useTextlineOrientation and not self.has_orientation:
            raise invalid(
                "useTextlineOrientation",
                f"this server was started without a text-line orientation model (SubModules.{ORIENTATION})",
            )
        data, is_pdf = await images.read_document(request.file, request.fileType)
        params = self.params_of(request)
        if is_pdf:
            params.max_pages = self.max_pdf_pages
            return Task(0, params.model_dump(exclude_none=True), data, "pdf")
        return Task(0, params.model_dump(exclude_none=True), data, "image")

    @staticmethod
    def params_of(request: OcrRequest) -> OcrParams:
        """The request's settings; what it leaves out the worker takes from the config."""
        return OcrParams(
            det=request.detection(),
            doc_orientation=request.useDocOrientationClassify,
            doc_unwarping=request.useDocUnwarping,
            orientation=request.useTextlineOrientation,
            score_thresh=request.textRecScoreThresh,
            word_box=request.returnWordBox,
            visualize=request.visualize,
            text_layer=request.usePdfTextLayer,
        )


PIPELINE = Ocr
