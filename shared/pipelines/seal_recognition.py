"""PaddleX's seal_recognition pipeline, at ``POST /seal-recognition``.

Built as PaddleX builds it: SubPipelines ``SealOCR`` (an OCR pipeline with
``text_type: seal``: the seal text detector's polygons, straightened before
they are read, see workers/ocr/curved.py) and ``DocPreprocessor``, and
optionally SubModules ``LayoutDetection`` to find the seals on a page.
PaddleX finds them with PP-DocLayout's "seal" class, which is not on PyPI
and which the embedded CDLA layout model does not have, so layout is off
by default: the whole image is the seal, as when PaddleX is called with
``use_layout_detection: False``. Point ``LayoutDetection.model_dir`` at a
PP-DocLayout export to find seals on whole pages.

Request fields (PaddleX 3.4.3's): ``file``/``fileType``, the document
preprocessing switches, ``useLayoutDetection`` with ``layoutThreshold``,
``layoutNms``, ``layoutUnclipRatio`` and ``layoutMergeBboxesMode``, the
``sealDet*`` detection settings and ``sealRecScoreThresh`` (handed to
SealOCR), ``visualize``. Result: ``sealRecResults`` (one per image or page:
``prunedResult`` with ``seal_res_list``, one OCR result per seal) and
``dataInfo``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from pxserve.shared.config import ConfigError
from pxserve.shared.errors import invalid
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import Task
from pxserve.shared.pipelines import Pipeline
from pxserve.shared.pipelines._document_requests import DetectionOverrides, FileRequest, SealDetectionFields
from pxserve.shared.pipelines.doc_preprocessor import check_switches
from pxserve.shared.pipelines.ocr import Ocr

LAYOUT = "LayoutDetection"
OCR_PIPELINE = "SealOCR"
MERGE_MODES = ("large", "small", "union")


class SealRequest(FileRequest, SealDetectionFields):
    useLayoutDetection: StrictBool | None = None
    layoutThreshold: float | None = Field(default=None, ge=0, le=1)
    layoutNms: StrictBool | None = None
    layoutUnclipRatio: float | tuple[float, float] | None = None
    layoutMergeBboxesMode: Literal["large", "small", "union"] | None = None


class LayoutOptions(BaseModel):
    """A request's layout settings; None: the config's."""

    model_config = ConfigDict(extra="forbid")

    # One value, or one per class id of the layout model (PaddleX's per-class settings).
    threshold: float | dict[int, float] | None = None
    nms: bool | None = None
    unclip_ratio: float | tuple[float, float] | dict[int, float | tuple[float, float]] | None = None
    merge_mode: str | dict[int, str] | None = None


class SealParams(BaseModel):
    """The stages that read a page (image, pdf, page): one request's settings."""

    model_config = ConfigDict(extra="forbid")

    doc_orientation: bool | None = None
    doc_unwarping: bool | None = None
    layout: bool | None = None
    layout_options: LayoutOptions = Field(default_factory=LayoutOptions)
    det: DetectionOverrides = Field(default_factory=DetectionOverrides)
    score_thresh: float | None = None
    visualize: bool | None = None
    max_pages: int | None = None
    page: int | None = None


class SealPrunedResult(BaseModel):
    model_settings: dict[str, bool]
    doc_preprocessor_res: dict[str, Any] | None = None
    layout_det_res: dict[str, Any] | None = None
    seal_res_list: list[dict[str, Any]] = Field(description="Per seal: its OCR result (text_type seal)")


class SealPageResult(BaseModel):
    prunedResult: SealPrunedResult
    outputImages: dict[str, str] | None
    inputImage: str | None


class SealRecognitionResult(BaseModel):
    sealRecResults: list[SealPageResult]
    dataInfo: dict[str, Any]


class SealRecognition(Pipeline):
    name = "seal_recognition"
    route = "/seal-recognition"
    runner = "pxserve.workers.seals:SealRunner"
    summary = "Read the text of seals, curved text straightened (PaddleX seal_recognition API)"
    request_model = SealRequest
    result_model = SealRecognitionResult
    pages_field = "sealRecResults"
    embedded_models = {"PicoDet_LCNet_x1_0_layout_cdla": "pxserve.workers.doc_models"}

    def model_keys(self) -> list[str]:
        return [LAYOUT] if self.has_layout else []

    @property
    def has_layout(self) -> bool:
        return LAYOUT in self.config.SubModules

    def check_startup(self) -> None:
        if not isinstance(self.sub_pipelines.get(OCR_PIPELINE), Ocr):
            raise ConfigError(
                f"{self.config.source}: seal_recognition needs SubPipelines.{OCR_PIPELINE} (OCR)"
            )
        if self.setting("use_layout_detection", False) and not self.has_layout:
            raise ConfigError(
                f"{self.config.source}: use_layout_detection is true but SubModules has no {LAYOUT}"
            )
        mode = self.module_setting(LAYOUT, "layout_merge_bboxes_mode", "large")
        if mode not in MERGE_MODES:
            raise ConfigError(f"{self.config.source}: layout_merge_bboxes_mode must be one of {MERGE_MODES}")

    async def parse(self, request: SealRequest, images: ImageLoader) -> Task:
        check_switches(self, request.useDocOrientationClassify, request.useDocUnwarping)
        if request.useLayoutDetection and not self.has_layout:
            raise invalid(
                "useLayoutDetection",
                f"this server has no layout model to find seals with (SubModules.{LAYOUT}: a PaddleX "
                "PP-DocLayout export); send false or leave it out to read the whole image as the seal",
            )
        data, is_pdf = await images.read_document(request.file, request.fileType)
        params = SealParams(
            doc_orientation=request.useDocOrientationClassify,
            doc_unwarping=request.useDocUnwarping,
            layout=request.useLayoutDetection,
            layout_options=LayoutOptions(
                threshold=request.layoutThreshold,
                nms=request.layoutNms,
                unclip_ratio=request.layoutUnclipRatio,
                merge_mode=request.layoutMergeBboxesMode,
            ),
            det=request.seal_detection(),
            score_thresh=request.sealRecScoreThresh,
            visualize=request.visualize,
            max_pages=self.max_pdf_pages if is_pdf else None,
        )
        return Task(0, params.model_dump(exclude_none=True), data, "pdf" if is_pdf else "image")


PIPELINE = SealRecognition
