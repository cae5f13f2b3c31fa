"""PaddleX's PP-StructureV3 (documents to Markdown), at ``POST /layout-parsing``.

Built from parts pxserve already serves: SubPipelines ``GeneralOCR`` (the
page's text), ``TableRecognition`` (SLANet_plus on each table region, its
cells filled from the page's lines), ``SealRecognition`` (each seal region's
curved text) and ``DocPreprocessor`` (pages turned upright); SubModules
``LayoutDetection`` (the regions and their labels) and, optionally,
``RegionDetection`` (PP-DocBlockLayout: groups of blocks read together).
The worker side (workers/structure/) reads a page as a small graph: upright
+ layout in one stage, then the page's OCR, each table's structure and each
seal's OCR as parallel tasks, then the blocks put in reading order and
written as Markdown.

Request fields are PaddleX 3.4.3's (``pp_structurev3.py`` in its serving
schemas); every one is honoured per request, or refused with a 422 naming
the model it needs where this server has none (formula and chart
recognition, unwarping, the table cell detectors, SLANeXt, the table
orientation classifier). The result is ``layoutParsingResults`` (one per
image or PDF page: ``prunedResult``, ``markdown``, ``outputImages``,
``inputImage``) and ``dataInfo``; a client that sends ``Accept:
text/markdown`` or ``application/zip`` gets the whole document instead
(shared/markdown_document.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from pxserve.shared.config import ConfigError
from pxserve.shared.errors import invalid
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.markdown_document import MarkdownDocument, MarkdownZip
from pxserve.shared.messages import Task
from pxserve.shared.pipelines import Pipeline
from pxserve.shared.pipelines._document_requests import (
    DetectionOverrides,
    FileRequest,
    SealDetectionFields,
    TextDetectionFields,
)
from pxserve.shared.pipelines.doc_preprocessor import NO_UNWARPING, check_switches
from pxserve.shared.pipelines.ocr import Ocr
from pxserve.shared.pipelines.seal_recognition import LayoutOptions, SealRecognition
from pxserve.shared.pipelines.table_recognition import TableRecognition

LAYOUT, REGION = "LayoutDetection", "RegionDetection"
OCR_PIPELINE, TABLE_PIPELINE, SEAL_PIPELINE = "GeneralOCR", "TableRecognition", "SealRecognition"
MERGE_MODES = ("large", "small", "union")
# PaddleX's default markdown_ignore_labels: what a page's margins hold, left out of its Markdown.
IGNORED_IN_MARKDOWN = ("number", "footnote", "header", "header_image", "footer", "footer_image", "aside_text")

# Switches whose models have no export pxserve can load offline: the 422 names what is missing.
MISSING_MODELS = {
    "useFormulaRecognition": "formula recognition needs PP-FormulaNet_plus-L",
    "useChartRecognition": "chart recognition needs PP-Chart2Table (a VLM)",
    "useWiredTableCellsTransToHtml": "needs the cell detector RT-DETR-L_wired_table_cell_det",
    "useWirelessTableCellsTransToHtml": "needs the cell detector RT-DETR-L_wireless_table_cell_det",
    "useE2eWiredTableRecModel": "needs SLANeXt_wired (SLANet_plus reads wired and wireless tables alike)",
    "useTableOrientationClassify": "table orientation needs PaddleX's TableOrientationClassify module",
}

Ratio = float | tuple[float, float]


class LayoutRequestFields(BaseModel):
    """PaddleX's layout* fields: one value, or one per class id of the layout model."""

    layoutThreshold: float | dict[int, float] | None = None
    layoutNms: StrictBool | None = None
    layoutUnclipRatio: Ratio | dict[int, Ratio] | None = None
    layoutMergeBboxesMode: Literal["large", "small", "union"] | dict[int, str] | None = None

    @field_validator("layoutThreshold")
    @classmethod
    def _thresholds(cls, value: Any) -> Any:
        for one in value.values() if isinstance(value, dict) else [value]:
            if one is not None and not 0 <= one <= 1:
                raise ValueError("thresholds must be between 0 and 1")
        return value

    @field_validator("layoutUnclipRatio")
    @classmethod
    def _ratios(cls, value: Any) -> Any:
        for one in value.values() if isinstance(value, dict) else [value]:
            for number in one if isinstance(one, tuple | list) else [one]:
                if number is not None and not 0 < number <= 10:
                    raise ValueError("unclip ratios must be above 0 and at most 10")
        return value

    @field_validator("layoutMergeBboxesMode")
    @classmethod
    def _modes(cls, value: Any) -> Any:
        if isinstance(value, dict) and any(mode not in MERGE_MODES for mode in value.values()):
            raise ValueError(f"merge modes must be one of {', '.join(MERGE_MODES)}")
        return value


class LayoutParsingRequest(FileRequest, TextDetectionFields, SealDetectionFields, LayoutRequestFields):
    useTextlineOrientation: StrictBool | None = None
    useSealRecognition: StrictBool | None = None
    useTableRecognition: StrictBool | None = None
    useFormulaRecognition: StrictBool | None = None
    useChartRecognition: StrictBool | None = None
    useRegionDetection: StrictBool | None = None
    formatBlockContent: StrictBool | None = None
    useWiredTableCellsTransToHtml: StrictBool | None = None
    useWirelessTableCellsTransToHtml: StrictBool | None = None
    useTableOrientationClassify: StrictBool | None = None
    useOcrResultsWithTableCells: StrictBool | None = None
    useE2eWiredTableRecModel: StrictBool | None = None
    useE2eWirelessTableRecModel: StrictBool | None = None  # SLANet_plus is the end-to-end wireless model
    markdownIgnoreLabels: list[str] | None = Field(default=None, max_length=64)
    prettifyMarkdown: StrictBool = True
    showFormulaNumber: StrictBool = False
    # PaddleX 3.7: false leaves the pictures out (no markdown.images); outputFormats ["docx"]
    # adds each page as a Word file (exports.docx).
    returnMarkdownImages: StrictBool = True
    # pxserve's extension: a PDF page's own text instead of OCR where it can be trusted (default:
    # the config's use_pdf_text_layer, on); false reads every page with OCR, as PaddleX does.
    usePdfTextLayer: StrictBool | None = None
    outputFormats: list[Literal["docx"]] | None = Field(default=None, max_length=1)


class StructureParams(BaseModel):
    """The stages that read a page (image, pdf, page): one request's settings."""

    model_config = ConfigDict(extra="forbid")

    doc_orientation: bool | None = None
    doc_unwarping: bool | None = None
    textline_orientation: bool | None = None
    seals: bool | None = None
    tables: bool | None = None
    regions: bool | None = None
    format_block_content: bool | None = None
    layout: LayoutOptions = Field(default_factory=LayoutOptions)
    det: DetectionOverrides = Field(default_factory=DetectionOverrides)
    score_thresh: float | None = None
    seal_det: DetectionOverrides = Field(default_factory=DetectionOverrides)
    seal_score_thresh: float | None = None
    cells_ocr: bool | None = None
    markdown_ignore_labels: list[str] | None = None
    prettify: bool = True
    show_formula_number: bool = False
    markdown_images: bool = True
    docx: bool = False
    text_layer: bool | None = None
    warnings: list[str] = []  # switches turned off (Serving.unserved_switches), for the answer
    visualize: bool | None = None
    max_pages: int | None = None
    page: int | None = None


class ParsingBlock(BaseModel):
    block_label: str
    block_content: str
    block_bbox: list[int] = Field(description="[x0, y0, x1, y1] in the page's pixels")
    block_id: int = Field(description="The block's index in parsing_res_list")
    block_order: int | None = Field(description="1-based reading order; null for headers, footers, numbers")
    group_id: int = Field(description="The region (RegionDetection) the block was read in, else its id")


class StructurePrunedResult(BaseModel):
    model_settings: dict[str, bool]
    doc_preprocessor_res: dict[str, Any] | None = None
    parsing_res_list: list[ParsingBlock] = Field(description="The page's blocks, in reading order")
    layout_det_res: dict[str, Any] = Field(
        description="The layout model's boxes: cls_id, label, score, coordinate"
    )
    region_det_res: dict[str, Any] | None = Field(default=None, description="Present when regions were used")
    overall_ocr_res: dict[str, Any] = Field(description="The page's OCR result, as /ocr's prunedResult")
    table_res_list: list[dict[str, Any]] = Field(description="As /table-recognition's")
    seal_res_list: list[dict[str, Any]] = Field(description="One OCR result per seal")
    formula_res_list: list[dict[str, Any]] = Field(description="Always empty: no formula model is served")
    text_layer_res: dict[str, Any] | None = Field(
        default=None,
        description="pxserve's: for a PDF page, whether its own text was read instead of OCR (used), "
        "and if not, why (reason); ocr_regions: layout regions OCR read (pictures of text)",
    )
    warnings: list[str] | None = Field(
        default=None, description="pxserve's: request switches turned off (Serving.unserved_switches)"
    )


class PageMarkdown(BaseModel):
    text: str
    images: dict[str, str] | None = Field(
        default=None, description="Path in text -> Base64 JPEG; absent if returnMarkdownImages is false"
    )
    isStart: bool = Field(description="Whether the page begins with the start of a paragraph")
    isEnd: bool = Field(description="Whether the page ends with the end of a paragraph")


class ExportedFile(BaseModel):
    content: str = Field(description="Base64 of the file")
    fileName: str


class StructurePageResult(BaseModel):
    prunedResult: StructurePrunedResult
    markdown: PageMarkdown
    outputImages: dict[str, str] | None = Field(description="Base64 JPEGs by name, when visualize is on")
    inputImage: str | None
    exports: dict[str, ExportedFile] | None = Field(
        default=None, description='The page in each of outputFormats ("docx": a Word file); absent if none'
    )


class LayoutParsingResult(BaseModel):
    layoutParsingResults: list[StructurePageResult]
    dataInfo: dict[str, Any]


class PPStructureV3(Pipeline):
    name = "PP-StructureV3"
    route = "/layout-parsing"
    runner = "pxserve.workers.structure.runner:StructureRunner"
    summary = "Documents to Markdown: layout, reading order, text, tables, seals (PaddleX PP-StructureV3 API)"
    request_model = LayoutParsingRequest
    result_model = LayoutParsingResult
    pages_field = "layoutParsingResults"
    document_formats = {"text/markdown": MarkdownDocument, "application/zip": MarkdownZip}
    embedded_models = {"PicoDet_LCNet_x1_0_layout_cdla": "pxserve.workers.doc_models"}

    def model_keys(self) -> list[str]:
        return [LAYOUT, REGION] if self.has_regions else [LAYOUT]

    @property
    def has_regions(self) -> bool:
        return REGION in self.config.SubModules

    def check_startup(self) -> None:
        source = self.config.source
        if LAYOUT not in self.config.SubModules:
            raise ConfigError(f"{source}: PP-StructureV3 needs SubModules.{LAYOUT}")
        needs = {OCR_PIPELINE: Ocr, TABLE_PIPELINE: TableRecognition, SEAL_PIPELINE: SealRecognition}
        for name, kind in needs.items():
            if not isinstance(self.sub_pipelines.get(name), kind):
                raise ConfigError(f"{source}: PP-StructureV3 needs SubPipelines.{name} ({kind.name})")
        for switch, model in (
            ("use_formula_recognition", "PP-FormulaNet_plus-L"),
            ("use_chart_recognition", "PP-Chart2Table"),
        ):
            if self.setting(switch, False):
                raise ConfigError(
                    f"{source}: {switch} needs {model}, which pxserve does not serve; set False"
                )
        if self.setting("use_region_detection", False) and not self.has_regions:
            raise ConfigError(f"{source}: use_region_detection is true but SubModules has no {REGION}")
        mode = self.module_setting(LAYOUT, "layout_merge_bboxes_mode", "large")
        modes = mode.values() if isinstance(mode, dict) else [mode]
        if any(m not in MERGE_MODES for m in modes):
            raise ConfigError(f"{source}: layout_merge_bboxes_mode must be one of {MERGE_MODES}")

    async def parse(self, request: LayoutParsingRequest, images: ImageLoader) -> Task:
        warnings = self._unserved_switches(request)
        check_switches(self, request.useDocOrientationClassify, request.useDocUnwarping)
        data, is_pdf = await images.read_document(request.file, request.fileType)
        params = StructureParams(
            doc_orientation=request.useDocOrientationClassify,
            doc_unwarping=request.useDocUnwarping,
            textline_orientation=request.useTextlineOrientation,
            seals=request.useSealRecognition,
            tables=request.useTableRecognition,
            regions=request.useRegionDetection,
            format_block_content=request.formatBlockContent,
            layout=LayoutOptions(
                threshold=request.layoutThreshold,
                nms=request.layoutNms,
                unclip_ratio=request.layoutUnclipRatio,
                merge_mode=request.layoutMergeBboxesMode,
            ),
            det=request.detection(),
            score_thresh=request.textRecScoreThresh,
            seal_det=request.seal_detection(),
            seal_score_thresh=request.sealRecScoreThresh,
            cells_ocr=request.useOcrResultsWithTableCells,
            markdown_ignore_labels=request.markdownIgnoreLabels,
            prettify=request.prettifyMarkdown,
            show_formula_number=request.showFormulaNumber,
            markdown_images=request.returnMarkdownImages,
            docx="docx" in (request.outputFormats or []),
            text_layer=request.usePdfTextLayer,
            visualize=request.visualize,
            max_pages=self.max_pdf_pages if is_pdf else None,
        )
        params.warnings = warnings
        return Task(0, params.model_dump(exclude_none=True), data, "pdf" if is_pdf else "image")

    def _unserved_switches(self, request: LayoutParsingRequest) -> list[str]:
        """Switches asking for a model this server lacks: a 422 naming it, or (with
        ``Serving.unserved_switches: turn_off``) each turned off in ``request``, and said so."""
        ocr = self.sub_pipelines[OCR_PIPELINE]
        unserved = {name: f"{why}, which this server does not serve" for name, why in MISSING_MODELS.items()}
        unserved["useDocUnwarping"] = NO_UNWARPING
        if not self.has_regions:
            unserved["useRegionDetection"] = (
                f"this server has no region model (SubModules.{REGION}: a PaddleX PP-DocBlockLayout export)"
            )
        if not (isinstance(ocr, Ocr) and ocr.has_orientation):
            unserved["useTextlineOrientation"] = (
                f"this server's {OCR_PIPELINE} has no text-line orientation model (TextLineOrientation)"
            )
        asked = [switch for switch in unserved if getattr(request, switch)]
        if asked and self.config.Serving.unserved_switches == "refuse":
            raise invalid(asked[0], unserved[asked[0]])
        for switch in asked:
            setattr(request, switch, False)
        return [f"{field} was turned off: {unserved[field]} (Serving.unserved_switches)" for field in asked]


PIPELINE = PPStructureV3
