"""The PP-StructureV3 runner: a page as a small graph of stages, its blocks as Markdown.

``STAGES`` (each with its parameters' type, see shared/stages.py):

* ``image`` / ``page`` -- read the page, turn it upright (DocPreprocessor,
  in-process), find its regions (LayoutDetection, and RegionDetection when
  asked), crop its pictures, then fan out: the page's OCR (a ``GeneralOCR``
  task, whose lines spread over the workers as /ocr's do), one
  ``TableRecognition/structure`` task per table (SLANet_plus, batched with
  every other table being read) and one ``SealRecognition/SealOCR`` task per
  seal, all in parallel; the continuation is ``assemble``.
* ``assemble`` -- the page's lines given to its blocks, tables filled in,
  blocks put in reading order (reading_order.py) and written as Markdown
  (markdown.py): PaddleX's layoutParsingResults entry.
* ``pdf`` / ``document`` -- a PDF's pages fanned out, then put together, as
  every document pipeline (workers/document_pages.py).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from pxserve.shared.messages import PARENT_PAYLOAD, FanOut, Outcome, Task
from pxserve.shared.pipelines import LoadedModel, RunnerContext
from pxserve.shared.pipelines.ocr import OcrParams
from pxserve.shared.pipelines.pp_structurev3 import (
    IGNORED_IN_MARKDOWN,
    LAYOUT,
    OCR_PIPELINE,
    REGION,
    SEAL_PIPELINE,
    TABLE_PIPELINE,
    PPStructureV3,
    StructureParams,
)
from pxserve.shared.pipelines.seal_recognition import OCR_PIPELINE as SEAL_OCR
from pxserve.shared.stages import Stage, StageTable
from pxserve.workers import layout as layouts
from pxserve.workers import pdf_text, tiff_pages
from pxserve.workers.document_pages import DocumentParams, DocumentRunner, Page
from pxserve.workers.ocr import visualize
from pxserve.workers.ocr.runner import STAGES as OCR_STAGES
from pxserve.workers.ocr.runner import OcrRunner, Options
from pxserve.workers.page_images import crop_box, decode_bgr, encode_jpeg, encode_png
from pxserve.workers.structure.blocks import PICTURES, Block, pp_label
from pxserve.workers.structure.docx_export import page_docx
from pxserve.workers.structure.markdown import (
    TITLES,
    MarkdownOptions,
    block_markdown,
    page_markdown,
)
from pxserve.workers.structure.page import PageFindings, read_page
from pxserve.workers.tables.runner import STAGES as TABLE_STAGES
from pxserve.workers.tables.runner import StructureParams as TableStructureParams
from pxserve.workers.tables.runner import table_result

MAX_PICTURE_SIDE = 1600  # pictures in markdown.images are scaled down to this (JPEG)


class AssembleParams(BaseModel):
    """A page whose OCR, tables and seals were read: what the result needs besides the children."""

    model_config = ConfigDict(extra="forbid")

    page_size: tuple[int, int]  # (height, width) of the upright page
    layout_det_res: dict[str, Any]
    region_det_res: dict[str, Any] | None = None
    tables: list[int] = []  # layout box index of each table read (children 1.. in this order)
    seals: list[int] = []  # then each seal read
    titles: list[int] = []  # then, when any, one child: these title regions read whole
    pictures: dict[int, str] = {}  # layout box index -> Base64 JPEG of its crop
    model_settings: dict[str, bool]
    doc_preprocessor_res: dict[str, Any] | None = None
    cells_ocr: bool = False
    format_block_content: bool = False
    markdown_ignore_labels: list[str] = list(IGNORED_IN_MARKDOWN)
    prettify: bool = True
    show_formula_number: bool = False
    # The PDF page's own text as an OCR result (workers/pdf_text.py), when it was used; then
    # children[0] is OCR's reading only if some regions needed it (ocr_regions, their boxes).
    text_layer: dict[str, Any] | None = None
    ocr_regions: list[list[float]] = []
    text_layer_res: dict[str, Any] | None = None  # what the answer says of it
    warnings: list[str] = []  # request switches turned off (Serving.unserved_switches)
    markdown_images: bool = True  # False: markdown has no images (PaddleX 3.7's returnMarkdownImages)
    docx: bool = False  # the page as a Word file too (outputFormats: ["docx"])
    page: int | None = None  # which page of a PDF (for the export's file name)
    visualize: bool = False
    data_info: dict[str, Any] | None = None  # set for a whole-image request
    # [GeneralOCR's result, each table's structure, each seal's OCR, the titles read whole (if any)]
    children: list[dict[str, Any]] = []


class StructureRunner(DocumentRunner):
    def __init__(
        self, models: dict[str, LoadedModel], pipeline: PPStructureV3, context: RunnerContext
    ) -> None:
        super().__init__(pipeline, context)
        layout = models[LAYOUT]
        self.layout = layouts.LayoutDetector(layout.backend, layout.model)
        region = models.get(REGION)
        self.regions = layouts.LayoutDetector(region.backend, region.model) if region is not None else None
        self.layout_defaults = layouts.configured(pipeline, LAYOUT)
        self.defaults = {
            "seals": bool(pipeline.setting("use_seal_recognition", True)),
            "tables": bool(pipeline.setting("use_table_recognition", True)),
            "regions": bool(pipeline.setting("use_region_detection", False)) and self.regions is not None,
            "format_block_content": bool(pipeline.setting("format_block_content", False)),
            "cells_ocr": bool(pipeline.setting("use_ocr_results_with_table_cells", False)),
            "text_layer": bool(pipeline.setting("use_pdf_text_layer", True)),
        }
        self.ignored_labels = list(pipeline.setting("markdown_ignore_labels", IGNORED_IN_MARKDOWN))
        self.ocr_stage = context.inside(OCR_PIPELINE).stage_name
        ocr = context.subs.get(OCR_PIPELINE)
        self.ocr: OcrRunner | None = getattr(ocr, "own", ocr)  # type: ignore[assignment]
        self.layer_check = pdf_text.LayerCheck(self.ocr.read_lines) if self.ocr is not None else None
        self.table_stage = context.inside(TABLE_PIPELINE).stage_name
        self.seal_stage = context.inside(SEAL_PIPELINE).inside(SEAL_OCR).stage_name

    def run(self, tasks: list[Task]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for slot, task in enumerate(tasks):
            item, _ = STAGES.handle(self, slot, task, "PP-StructureV3")
            if isinstance(item, Page):
                item = self._fan_out(item)
            elif isinstance(item, dict):
                item = Outcome.success(task.request_id, item)
            outcomes.append(item)
        return outcomes

    def _pick(self, params: StructureParams, name: str) -> bool:
        value = getattr(params, name)
        return self.defaults[name] if value is None else bool(value)

    # -- reading a page --------------------------------------------------------------
    def _detect(self, page: Page) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The page's layout (PaddleX's per-request options applied) and, when asked, its regions."""
        params: StructureParams = page.params
        asked = {k: v for k, v in params.layout.model_dump().items() if v is not None}
        found = layouts.detect_refined(self.layout, page.image, {**self.layout_defaults, **asked})
        self.beat()
        regions = None
        if self.regions is not None and self._pick(params, "regions"):
            regions = layouts.refine(self.regions.detect(page.image), True, None, "small")
            self.beat()
        return found, regions

    def _fan_out(self, page: Page) -> Outcome:
        self.upright(page)
        params: StructureParams = page.params
        layout, regions = self._detect(page)
        height, width = page.image.shape[:2]
        boxes = layout["boxes"]
        labels = [pp_label(str(b["label"])) for b in boxes]
        wanted = {"table": self._pick(params, "tables"), "seal": self._pick(params, "seals")}
        tables = [i for i, label in enumerate(labels) if label == "table" and wanted["table"]]
        seals = [i for i, label in enumerate(labels) if label == "seal" and wanted["seal"]]
        cut_out = params.markdown_images or params.docx  # "": the picture's place, with no crop made
        pictures = {  # a table not read is shown as a picture
            i: _picture(page.image, box["coordinate"]) if cut_out else ""
            for i, (box, label) in enumerate(zip(boxes, labels, strict=True))
            if (label in PICTURES or (label == "table" and i not in tables)) and _area(box["coordinate"]) > 0
        }
        ocr_params = OcrParams(  # word boxes: to cut a line the detector ran across two columns
            det=params.det,
            score_thresh=params.score_thresh,
            orientation=params.textline_orientation,
            word_box=True,
            visualize=params.visualize,
        )
        layer, layer_res, ocr_regions = self._text_layer(page, boxes, labels)
        children: list[Task] = []
        if layer is not None and not ocr_regions:
            children = []  # the page's own text holds all of it: no OCR
        elif page.whole_file:
            children = [OCR_STAGES["image"].task(ocr_params, PARENT_PAYLOAD, self.ocr_stage)]
        elif page.unchanged:  # a PDF page as rendered: the OCR renders it again from the file
            page_params = ocr_params.model_copy(update={"page": params.page})
            children = [OCR_STAGES["page"].task(page_params, PARENT_PAYLOAD, self.ocr_stage)]
        else:
            children = [OCR_STAGES["image"].task(ocr_params, encode_png(page.image), self.ocr_stage)]
        cells_ocr = self._pick(params, "cells_ocr")
        structure = TableStructureParams(
            cells_ocr=cells_ocr, det=params.det, score_thresh=params.score_thresh
        )
        for i in tables:
            crop = crop_box(page.image, boxes[i]["coordinate"])
            children.append(TABLE_STAGES["structure"].task(structure, encode_png(crop), self.table_stage))
        seal_params = OcrParams(det=params.seal_det, score_thresh=params.seal_score_thresh)
        for i in seals:
            crop = crop_box(page.image, boxes[i]["coordinate"])
            children.append(OCR_STAGES["image"].task(seal_params, encode_png(crop), self.seal_stage))
        # Titles are read again whole: the detector may leave out a section number set apart.
        titles = [i for i, label in enumerate(labels) if label in TITLES]
        if titles and self.ocr is not None and layer is None:
            crops = [crop_box(page.image, boxes[i]["coordinate"], pad=4) for i in titles]
            children.append(self.ocr.lines_task(crops))
        else:
            titles = []
        visualize_on = self.visualize(params)
        then = AssembleParams(
            page_size=(height, width),
            layout_det_res=layout,
            region_det_res=regions,
            tables=tables,
            seals=seals,
            titles=titles,
            pictures=pictures,
            text_layer=layer,
            ocr_regions=[boxes[i]["coordinate"] for i in ocr_regions],
            text_layer_res=layer_res,
            warnings=params.warnings,
            model_settings={
                "use_doc_preprocessor": page.doc is not None,
                "use_pdf_text_layer": layer is not None,
                "use_seal_recognition": self._pick(params, "seals"),
                "use_table_recognition": self._pick(params, "tables"),
                "use_formula_recognition": False,
                "use_chart_recognition": False,
                "use_region_detection": regions is not None,
            },
            doc_preprocessor_res=page.doc,
            cells_ocr=cells_ocr,
            format_block_content=self._pick(params, "format_block_content"),
            markdown_ignore_labels=_either(params.markdown_ignore_labels, self.ignored_labels),
            prettify=params.prettify,
            show_formula_number=params.show_formula_number,
            markdown_images=params.markdown_images,
            docx=params.docx,
            page=params.page,
            visualize=visualize_on,
            data_info=page.data_info,
        )
        source = encode_jpeg(page.image) if visualize_on else b""
        if not children:  # nothing to wait for: the page is put together here
            assembled = self.assemble(page.slot, Task(page.task.request_id, {}, source), then)
            return Outcome.success(page.task.request_id, assembled)
        plan = FanOut(children, STAGES["assemble"].task(then, source, self.stage_name))
        return Outcome.fan_out(page.task.request_id, plan)

    # -- a PDF page's own text ---------------------------------------------------------
    def _text_layer(
        self, page: Page, boxes: list[dict[str, Any]], labels: list[str]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[int]]:
        """(the page's own text as an OCR result, or None for OCR; what the answer says of it;
        the layout regions OCR must still read, pictures of text on the page)."""
        params: StructureParams = page.params
        if params.page is None or page.data_info is not None or tiff_pages.is_tiff(page.task.image):
            return None, None, []  # an image: nothing but pixels
        if not self._pick(params, "text_layer"):
            return None, {"used": False, "reason": "not asked for (usePdfTextLayer false)"}, []
        if not page.unchanged:
            return None, {"used": False, "reason": "the page was turned upright first"}, []
        height, width = page.image.shape[:2]
        text = pdf_text.read_page_text(page.task.image, params.page, (width, height))
        if text.usable and self.layer_check is not None:
            text.reason = self.layer_check.reason_against(text, page.image)
            self.beat()
        if not text.usable:
            return None, {"used": False, "reason": text.reason or "it has no text layer"}, []
        regions = [b["coordinate"] for b in boxes]
        tables = [regions[i] for i, label in enumerate(labels) if label == "table"]
        text.lines = pdf_text.split_in_regions(text.lines, tables, text.scale)
        read_apart = PICTURES | {"table", "seal"}  # pictures, and regions their own models read
        readable = [i for i, label in enumerate(labels) if label not in read_apart]
        need = pdf_text.regions_without_text(text, [regions[i] for i in readable])
        ocr_regions = [readable[i] for i in need]
        ocr = Options.of(OcrParams(det=params.det), self.ocr.defaults) if self.ocr is not None else None
        det = ocr.det.as_result() if ocr is not None else {}
        answer = {"used": True, "reason": "", "ocr_regions": len(ocr_regions)}
        return pdf_text.as_ocr_result(text.lines, det), answer, ocr_regions

    # -- the result -------------------------------------------------------------------------
    def assemble(self, slot: int, task: Task, params: AssembleParams) -> dict[str, Any]:
        read_by_ocr = params.text_layer is None or bool(params.ocr_regions)
        ocr_entry: dict[str, Any] = {}
        if read_by_ocr:
            ocr_child = params.children[0]
            ocr_entry = (ocr_child.get("ocrResults") or [ocr_child])[0]
        if params.text_layer is None:
            overall = ocr_entry["prunedResult"]
        else:
            overall = pdf_text.with_ocr_lines(
                params.text_layer, ocr_entry.get("prunedResult"), params.ocr_regions
            )
        height, width = params.page_size
        first = 1 if read_by_ocr else 0
        seals_from = first + len(params.tables)
        structures = params.children[first:seals_from]
        seal_children = params.children[seals_from : seals_from + len(params.seals)]
        reread = params.children[-1]["texts"] if params.titles else []
        titles = dict(zip(params.titles, reread, strict=True))
        # The word boxes were for cutting lines, the fonts for headings; PaddleX's overall_ocr_res
        # has neither.
        helpers = ("text_word", "text_word_region", "text_layer_fonts")
        plain = {k: v for k, v in overall.items() if k not in helpers}
        plain["return_word_box"] = False
        boxes = params.layout_det_res["boxes"]
        contents: dict[int, str] = {}
        table_res_list = []
        for index, structure in zip(params.tables, structures, strict=True):
            table = table_result(
                boxes[index]["coordinate"], structure, plain, (height, width), params.cells_ocr
            )
            table_res_list.append(table)
            contents[index] = table["pred_html"]
        seal_res_list = []
        for index, child in zip(params.seals, seal_children, strict=True):
            seal = (child.get("ocrResults") or [child])[0]["prunedResult"]
            seal_res_list.append(seal)
            contents[index] = "\n".join(seal["rec_texts"])
        regions = [b["coordinate"] for b in params.region_det_res["boxes"]] if params.region_det_res else []
        ignored = frozenset(params.markdown_ignore_labels)
        pictures = {int(index): b64 for index, b64 in params.pictures.items()}
        ordered = read_page(
            PageFindings(
                params.layout_det_res, overall, (height, width), contents, pictures, titles, regions, ignored
            )
        )
        images = {b.image: pictures[b.source] for b in ordered if b.image and b.source in pictures}
        options = MarkdownOptions(ignored, params.prettify, params.show_formula_number)
        text, starts, ends = page_markdown(ordered, width, options)
        used = {path for path in images if path in text}
        parsing = [
            {
                "block_label": block.label,
                "block_content": block_markdown(block, width, options)
                if params.format_block_content
                else block.content,
                "block_bbox": [int(v) for v in block.box],
                "block_id": number,
                "block_order": block.order,
                "group_id": block.group,
            }
            for number, block in enumerate(ordered)
        ]
        pruned: dict[str, Any] = {"model_settings": params.model_settings}
        if params.doc_preprocessor_res is not None:
            pruned["doc_preprocessor_res"] = params.doc_preprocessor_res
        pruned["parsing_res_list"] = parsing
        pruned["layout_det_res"] = params.layout_det_res
        if params.region_det_res is not None:
            pruned["region_det_res"] = params.region_det_res
        pruned["overall_ocr_res"] = plain
        pruned["table_res_list"] = table_res_list
        pruned["seal_res_list"] = seal_res_list
        pruned["formula_res_list"] = []
        if params.text_layer_res is not None:
            pruned["text_layer_res"] = params.text_layer_res
        if params.warnings:
            pruned["warnings"] = params.warnings
        markdown: dict[str, Any] = {"text": text}
        if params.markdown_images:
            markdown["images"] = {path: b64 for path, b64 in images.items() if path in used}
        markdown.update(isStart=starts, isEnd=ends)
        output_images: dict[str, str] | None = None
        input_image = None
        if params.visualize and len(task.image):
            page = decode_bgr(task.image)
            output_images = _output_images(page, params.layout_det_res, ocr_entry.get("ocrImage"), ordered)
            input_image = visualize.to_jpeg_base64(visualize.bgr_to_image(page))
        entry = {
            "prunedResult": pruned,
            "markdown": markdown,
            "outputImages": output_images,
            "inputImage": input_image,
        }
        if params.docx:
            name = "image.docx" if params.page is None else f"page_{params.page + 1}.docx"
            content = base64.b64encode(page_docx(ordered, pictures, width, options)).decode("ascii")
            entry["exports"] = {"docx": {"content": content, "fileName": name}}
        return self.wrap(entry, params.data_info)


def _either(value: Any, default: Any) -> Any:
    return default if value is None else value


def _area(box: list[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _picture(image: np.ndarray, box: list[float]) -> str:
    """A picture's crop as Base64 JPEG, scaled down if very large."""
    import cv2

    crop = crop_box(image, box)
    side = max(crop.shape[:2])
    if side > MAX_PICTURE_SIDE:
        scale = MAX_PICTURE_SIDE / side
        crop = cv2.resize(crop, (max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale))))
    return visualize.to_jpeg_base64(visualize.bgr_to_image(np.ascontiguousarray(crop)))


def _output_images(
    page: np.ndarray, layout: dict[str, Any], ocr_image: str | None, ordered: list[Block]
) -> dict[str, str]:
    """PaddleX's outputImages: the layout boxes, the OCR drawing, the blocks in reading order."""
    from PIL import ImageDraw

    images = {"layout_det_res": visualize.to_jpeg_base64(visualize.draw_regions(page, layout))}
    if ocr_image:
        images["overall_ocr_res"] = ocr_image
    drawn = visualize.bgr_to_image(page)
    draw = ImageDraw.Draw(drawn)
    for block in ordered:
        box = [int(v) for v in block.box]
        draw.rectangle(box, outline=(255, 64, 0), width=3)
        if block.order is not None:
            draw.text((box[0] + 4, box[1] + 2), str(block.order), fill=(255, 64, 0))
    images["layout_order_res"] = visualize.to_jpeg_base64(drawn)
    return images


STAGES = StageTable(  # the first is what a task with no stage runs
    Stage(
        "image",
        StructureParams,
        "decode an image, find its regions, fan out OCR, tables and seals",
        StructureRunner.image_page,
    ),
    Stage(
        "pdf", StructureParams, "check a PDF, fan out its pages, then the document", StructureRunner.split_pdf
    ),
    Stage(
        "page", StructureParams, "render one page of the PDF payload, then as image", StructureRunner.pdf_page
    ),
    Stage(
        "assemble",
        AssembleParams,
        "blocks, reading order and Markdown from the page's OCR, tables and seals",
        StructureRunner.assemble,
    ),
    Stage("document", DocumentParams, "a PDF's result from its pages' results", StructureRunner.document),
)
StructureRunner.STAGES = STAGES
