"""PaddleX's table_recognition pipeline, at ``POST /table-recognition``.

Built as PaddleX builds it, from parts pxserve already serves:
SubPipelines ``GeneralOCR`` (an OCR pipeline: the page's text) and
``DocPreprocessor`` (pages turned upright), and SubModules
``TableStructureRecognition`` (SLANet_plus: the table's HTML structure
and cell boxes) and ``LayoutDetection`` (where the tables are on a page;
embedded default the PicoDet CDLA layout model, or a PaddleX PP-DocLayout
export via ``model_dir``). The worker side (workers/tables/) runs a page
as a small graph: upright + layout in one stage, then the page's OCR and
each table's structure as parallel tasks, then the cells filled in.

Request fields (PaddleX 3.4.3's): ``file``/``fileType``, the document
preprocessing switches, ``useLayoutDetection``, ``useOcrModel`` (only true:
the HTTP API cannot hand in OCR results), the text detection settings and
``textRecScoreThresh`` (handed to GeneralOCR), ``useOcrResultsWithTableCells``
(read each cell on its own instead of matching the page's lines) and
``visualize``. Result: ``tableRecResults`` (one per image or page, each with
``prunedResult``, ``outputImages``, ``inputImage``) and ``dataInfo``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from pxserve.shared.config import ConfigError
from pxserve.shared.errors import invalid
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import Task
from pxserve.shared.pipelines import Pipeline
from pxserve.shared.pipelines._document_requests import DetectionOverrides, FileRequest, TextDetectionFields
from pxserve.shared.pipelines.doc_preprocessor import check_switches
from pxserve.shared.pipelines.ocr import Ocr

STRUCTURE, LAYOUT = "TableStructureRecognition", "LayoutDetection"
OCR_PIPELINE = "GeneralOCR"


class TableRequest(FileRequest, TextDetectionFields):
    useLayoutDetection: StrictBool | None = None
    useOcrModel: StrictBool | None = None
    useOcrResultsWithTableCells: StrictBool = False


class TableParams(BaseModel):
    """The stages that read a page (image, pdf, page): one request's settings."""

    model_config = ConfigDict(extra="forbid")

    doc_orientation: bool | None = None
    doc_unwarping: bool | None = None
    layout: bool | None = None
    det: DetectionOverrides = Field(default_factory=DetectionOverrides)
    score_thresh: float | None = None
    cells_ocr: bool = False
    visualize: bool | None = None
    max_pages: int | None = None
    page: int | None = None


class TableResult(BaseModel):
    cell_box_list: list[list[float]] = Field(
        description="[x0, y0, x1, y1] of each cell, in the page's pixels"
    )
    pred_html: str = Field(description="The table as HTML, with each cell's text")
    table_ocr_pred: dict[str, Any] = Field(description="The OCR lines inside the table")


class TablePrunedResult(BaseModel):
    model_settings: dict[str, bool]
    doc_preprocessor_res: dict[str, Any] | None = None
    layout_det_res: dict[str, Any] | None = Field(
        default=None, description="Present when layout detection ran"
    )
    overall_ocr_res: dict[str, Any] = Field(description="The page's OCR result, as /ocr's prunedResult")
    table_res_list: list[TableResult]


class TablePageResult(BaseModel):
    prunedResult: TablePrunedResult
    outputImages: dict[str, str] | None = Field(description="Base64 JPEGs by name, when visualize is on")
    inputImage: str | None


class TableRecognitionResult(BaseModel):
    tableRecResults: list[TablePageResult]
    dataInfo: dict[str, Any]


class TableRecognition(Pipeline):
    name = "table_recognition"
    route = "/table-recognition"
    runner = "pxserve.workers.tables.runner:TableRunner"
    summary = "Read tables as HTML, with their text (PaddleX table_recognition API)"
    request_model = TableRequest
    result_model = TableRecognitionResult
    pages_field = "tableRecResults"
    embedded_models = {
        "SLANet_plus": "pxserve.workers.doc_models",
        "PicoDet_LCNet_x1_0_layout_cdla": "pxserve.workers.doc_models",
    }

    def model_keys(self) -> list[str]:
        return [STRUCTURE, LAYOUT] if self.has_layout else [STRUCTURE]

    @property
    def has_layout(self) -> bool:
        return LAYOUT in self.config.SubModules

    def check_startup(self) -> None:
        if STRUCTURE not in self.config.SubModules:
            raise ConfigError(f"{self.config.source}: table_recognition needs SubModules.{STRUCTURE}")
        if not isinstance(self.sub_pipelines.get(OCR_PIPELINE), Ocr):
            raise ConfigError(
                f"{self.config.source}: table_recognition needs SubPipelines.{OCR_PIPELINE} (OCR)"
            )
        if self.setting("use_layout_detection", True) and not self.has_layout:
            raise ConfigError(
                f"{self.config.source}: use_layout_detection is true but SubModules has no {LAYOUT}"
            )
        if not self.setting("use_ocr_model", True):
            raise ConfigError(
                f"{self.config.source}: use_ocr_model must be true (OCR results cannot be sent in)"
            )

    async def parse(self, request: TableRequest, images: ImageLoader) -> Task:
        check_switches(self, request.useDocOrientationClassify, request.useDocUnwarping)
        if request.useLayoutDetection and not self.has_layout:
            raise invalid("useLayoutDetection", f"this server has no layout model (SubModules.{LAYOUT})")
        if request.useOcrModel is False:
            raise invalid("useOcrModel", "must be true or left out: the HTTP API cannot send OCR results in")
        data, is_pdf = await images.read_document(request.file, request.fileType)
        params = TableParams(
            doc_orientation=request.useDocOrientationClassify,
            doc_unwarping=request.useDocUnwarping,
            layout=request.useLayoutDetection,
            det=request.detection(),
            score_thresh=request.textRecScoreThresh,
            cells_ocr=request.useOcrResultsWithTableCells,
            visualize=request.visualize,
            max_pages=self.max_pdf_pages if is_pdf else None,
        )
        return Task(0, params.model_dump(exclude_none=True), data, "pdf" if is_pdf else "image")


PIPELINE = TableRecognition
