"""The table_recognition runner: a page as a small graph of stages.

``STAGES`` (each with its parameters' type, see shared/stages.py):

* ``image`` / ``page`` -- read the page, turn it upright (DocPreprocessor,
  in-process), find its tables (layout detection, or the whole page), then
  fan out: the page's OCR (a ``GeneralOCR`` task, which spreads its lines
  over the workers as /ocr does) and one ``structure`` task per table, all
  running in parallel; the continuation is ``assemble``.
* ``structure`` -- SLANet_plus on table crops; tables from every request in
  the batch share one model call (they are padded to one shape). With
  ``useOcrResultsWithTableCells`` each cell is read on its own here, by the
  GeneralOCR runner in-process.
* ``assemble`` -- the page's lines matched to the cells: PaddleX's prunedResult.
* ``pdf`` / ``document`` -- a PDF's pages fanned out, then put together.

Payloads: a child reads the request's own file (PARENT_PAYLOAD) whenever
the page is that file unchanged; otherwise it gets the pixels as PNG, so
every stage sees exactly the pixels PaddleX's would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from pxserve.shared.messages import PARENT_PAYLOAD, FanOut, Outcome, Task
from pxserve.shared.pipelines import LoadedModel, RunnerContext
from pxserve.shared.pipelines.ocr import DetectionOverrides, OcrParams
from pxserve.shared.pipelines.table_recognition import (
    LAYOUT,
    OCR_PIPELINE,
    STRUCTURE,
    TableParams,
    TableRecognition,
)
from pxserve.shared.stages import Stage, StageTable
from pxserve.workers.document_pages import DocumentParams, DocumentRunner, Page
from pxserve.workers.layout import LayoutDetector
from pxserve.workers.ocr import visualize
from pxserve.workers.ocr.runner import STAGES as OCR_STAGES
from pxserve.workers.ocr.runner import OcrRunner
from pxserve.workers.page_images import decode_bgr, encode_jpeg, encode_png
from pxserve.workers.tables import cells as table_cells
from pxserve.workers.tables.structure import TableStructureModel


class StructureParams(BaseModel):
    """One table crop (the payload) to read the structure of."""

    model_config = ConfigDict(extra="forbid")

    cells_ocr: bool = False  # read each cell's text here (useOcrResultsWithTableCells)
    det: DetectionOverrides = DetectionOverrides()
    score_thresh: float | None = None


class AssembleParams(BaseModel):
    """A page whose OCR and tables were read: what the result needs besides the children."""

    model_config = ConfigDict(extra="forbid")

    boxes: list[list[int | float]]  # each table's box on the page (children 1.. in this order)
    page_size: tuple[int, int]  # (height, width) of the upright page
    model_settings: dict[str, bool]
    doc_preprocessor_res: dict[str, Any] | None = None
    layout_det_res: dict[str, Any] | None = None
    cells_ocr: bool = False
    visualize: bool = False
    data_info: dict[str, Any] | None = None  # set for a whole-image request
    children: list[dict[str, Any]] = []  # [GeneralOCR's result, each table's structure]


class TableRunner(DocumentRunner):
    def __init__(
        self, models: dict[str, LoadedModel], pipeline: TableRecognition, context: RunnerContext
    ) -> None:
        super().__init__(pipeline, context)
        structure = models[STRUCTURE]
        self.structure = TableStructureModel(structure.backend, structure.model)
        layout = models.get(LAYOUT)
        self.layout = LayoutDetector(layout.backend, layout.model) if layout is not None else None
        ocr = context.subs.get(OCR_PIPELINE)
        self.ocr: OcrRunner | None = getattr(ocr, "own", ocr)  # type: ignore[assignment]
        self.ocr_stage = context.inside(OCR_PIPELINE).stage_name
        self.use_layout = pipeline.setting("use_layout_detection", True) and self.layout is not None

    def run(self, tasks: list[Task]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(tasks)
        pages: list[Page] = []
        crops: list[tuple[int, StructureParams, np.ndarray]] = []
        for slot, task in enumerate(tasks):
            item, params = STAGES.handle(self, slot, task, "table_recognition")
            if isinstance(item, Page):
                pages.append(item)
            elif isinstance(item, np.ndarray):
                crops.append((slot, params, item))
            elif isinstance(item, dict):
                outcomes[slot] = Outcome.success(task.request_id, item)
            else:
                outcomes[slot] = item
        for page in self._find_tables(pages):
            outcomes[page.slot] = self._fan_out(page)
        if crops:
            structures = self.structure.predict([image for _, _, image in crops])
            self.beat()
            for (slot, params, image), structure in zip(crops, structures, strict=True):
                answer: dict[str, Any] = {"tokens": structure.tokens, "cells": structure.cells}
                if params.cells_ocr:
                    answer["cell_texts"] = self._read_cells(image, structure.cells, params)
                outcomes[slot] = Outcome.success(tasks[slot].request_id, answer)
        return [o for o in outcomes if o is not None]

    # -- reading a page --------------------------------------------------------------
    def _find_tables(self, pages: list[Page]) -> list[Page]:
        """Turn each page upright and find its tables (the whole page when layout is off)."""
        for page in pages:
            self.upright(page)
            use_layout = self.use_layout if page.params.layout is None else page.params.layout
            height, width = page.image.shape[:2]
            if use_layout and self.layout is not None:
                page.layout = self.layout.detect(page.image)
                self.beat()
                page.regions = [
                    b["coordinate"] for b in page.layout["boxes"] if b["label"].lower() == "table"
                ]
            else:
                page.regions = [[0, 0, width - 1, height - 1]]
        return pages

    def _fan_out(self, page: Page) -> Outcome:
        params = page.params
        whole_file = page.whole_file
        encoded: list[bytes] = []

        def png() -> bytes:  # the upright page, encoded once if a child needs it
            if not encoded:
                encoded.append(encode_png(page.image))
            return encoded[0]

        ocr_params = OcrParams(det=params.det, score_thresh=params.score_thresh, visualize=params.visualize)
        if whole_file:
            ocr_task = OCR_STAGES["image"].task(ocr_params, PARENT_PAYLOAD, self.ocr_stage)
        elif page.unchanged:  # a PDF page as rendered: the OCR renders it again from the file
            ocr_task = OCR_STAGES["page"].task(
                ocr_params.model_copy(update={"page": params.page}), PARENT_PAYLOAD, self.ocr_stage
            )
        else:
            ocr_task = OCR_STAGES["image"].task(ocr_params, png(), self.ocr_stage)
        structure = StructureParams(
            cells_ocr=params.cells_ocr, det=params.det, score_thresh=params.score_thresh
        )
        children = [ocr_task]
        height, width = page.image.shape[:2]
        for box in page.regions:
            x0, y0, x1, y1 = (int(v) for v in box)
            whole = (x0, y0, x1, y1) == (0, 0, width - 1, height - 1)
            if whole and whole_file:
                payload: bytes = PARENT_PAYLOAD
            elif whole:
                payload = png()
            else:
                payload = encode_png(page.image[y0:y1, x0:x1])
            children.append(STAGES["structure"].task(structure, payload, self.stage_name))
        visualize = self.visualize(params)
        then = AssembleParams(
            boxes=page.regions,
            page_size=(height, width),
            model_settings={
                "use_doc_preprocessor": page.doc is not None,
                "use_layout_detection": page.layout is not None,
                "use_ocr_model": True,
            },
            doc_preprocessor_res=page.doc,
            layout_det_res=page.layout,
            cells_ocr=params.cells_ocr,
            visualize=visualize,
            data_info=page.data_info,
        )
        source = encode_jpeg(page.image) if visualize else b""
        return Outcome.fan_out(
            page.task.request_id, FanOut(children, STAGES["assemble"].task(then, source, self.stage_name))
        )

    def warm_up(self) -> None:
        """The structure model once (the probe image of warm-up reaches only layout and OCR)."""
        self.structure.predict([np.full((64, 96, 3), 255, np.uint8)])

    # -- a table's structure -----------------------------------------------------------
    def table_crop(self, slot: int, task: Task, params: StructureParams) -> np.ndarray:
        return decode_bgr(task.image)

    def _read_cells(self, image: np.ndarray, cells: list[list[int]], params: StructureParams) -> list[str]:
        """Each cell's text, read on its own (PaddleX: OCR on each cell's box, lines joined)."""
        if self.ocr is None:
            return [""] * len(cells)
        crops = []
        for cell in cells:
            x0, y0, x1, y1 = (max(0, int(np.ceil(v))) for v in (cell[0], cell[1], cell[4], cell[5]))
            crop = image[y0:y1, x0:x1]
            crops.append(crop if crop.size else np.full((8, 8, 3), 255, np.uint8))
        results = self.ocr.read_images(crops, OcrParams(det=params.det, score_thresh=params.score_thresh))
        return ["".join(r["rec_texts"]) for r in results]

    # -- the result -------------------------------------------------------------------------
    def assemble(self, slot: int, task: Task, params: AssembleParams) -> dict[str, Any]:
        ocr_child, structures = params.children[0], params.children[1:]
        ocr_entry = (ocr_child.get("ocrResults") or [ocr_child])[0]
        overall = ocr_entry["prunedResult"]
        height, width = params.page_size
        tables = []
        for box, structure in zip(params.boxes, structures, strict=True):
            tables.append(table_result(box, structure, overall, (height, width), params.cells_ocr))
        pruned: dict[str, Any] = {"model_settings": params.model_settings}
        if params.doc_preprocessor_res is not None:
            pruned["doc_preprocessor_res"] = params.doc_preprocessor_res
        if params.layout_det_res is not None:
            pruned["layout_det_res"] = params.layout_det_res
        pruned["overall_ocr_res"] = overall
        pruned["table_res_list"] = tables
        images: dict[str, str] | None = None
        input_image = None
        if params.visualize and len(task.image):
            page = decode_bgr(task.image)
            images = _output_images(page, tables, params.layout_det_res, ocr_entry.get("ocrImage"))
            input_image = visualize.to_jpeg_base64(visualize.bgr_to_image(page))
        entry = {"prunedResult": pruned, "outputImages": images, "inputImage": input_image}
        return self.wrap(entry, params.data_info)


def table_result(
    box: list[float],
    structure: dict[str, Any],
    overall: dict[str, Any],
    shape: tuple[int, int],
    cells_ocr: bool,
) -> dict[str, Any]:
    """One ``table_res_list`` entry, as PaddleX 3.4.3 computes it."""
    tokens, cells = structure["tokens"], structure["cells"]
    inside = table_cells.lines_in(overall, box)
    height, width = shape
    cell_boxes: list[list[float]] = []
    if cells:
        offset = np.array([box[0], box[1]] * 4)
        moved = (np.asarray(cells) + offset).tolist()
        clipped = np.clip(np.asarray(table_cells.boxes_of(moved)), 0, [width, height, width, height])
        cell_boxes = clipped.tolist()
    if not cells or not inside["rec_boxes"]:
        return {"cell_box_list": cell_boxes, "pred_html": " ".join(tokens), "table_ocr_pred": inside}
    if cells_ocr:
        lines, texts = cell_boxes, structure.get("cell_texts") or [""] * len(cell_boxes)
    else:
        lines, texts = inside["rec_boxes"], inside["rec_texts"]
    matched = table_cells.match(cell_boxes, lines)
    return {
        "cell_box_list": cell_boxes,
        "pred_html": table_cells.html(tokens, matched, texts),
        "table_ocr_pred": inside,
    }


def _output_images(
    page: np.ndarray, tables: list[dict[str, Any]], layout: dict[str, Any] | None, ocr_image: str | None
) -> dict[str, str]:
    """PaddleX's outputImages: the cells outlined, the layout boxes, the OCR drawing."""
    from PIL import ImageDraw

    images: dict[str, str] = {}
    if layout is not None:
        images["layout_det_res"] = visualize.to_jpeg_base64(visualize.draw_regions(page, layout))
    if ocr_image:
        images["ocr_res_img"] = ocr_image
    if tables:
        drawn = visualize.bgr_to_image(page)
        draw = ImageDraw.Draw(drawn)
        for table in tables:
            for cell in table["cell_box_list"]:
                draw.rectangle([int(v) for v in cell], outline=(255, 0, 0), width=2)
        images["table_cell_img"] = visualize.to_jpeg_base64(drawn)
    return images


STAGES = StageTable(  # the first is what a task with no stage runs
    Stage(
        "image",
        TableParams,
        "decode an image, find its tables, fan out OCR and structure",
        TableRunner.image_page,
    ),
    Stage("pdf", TableParams, "check a PDF, fan out its pages, then the document", TableRunner.split_pdf),
    Stage("page", TableParams, "render one page of the PDF payload, then as image", TableRunner.pdf_page),
    Stage(
        "structure",
        StructureParams,
        "SLANet_plus on a table crop (batched across requests)",
        TableRunner.table_crop,
    ),
    Stage("assemble", AssembleParams, "match the page's lines to each table's cells", TableRunner.assemble),
    Stage("document", DocumentParams, "a PDF's result from its pages' results", TableRunner.document),
)
TableRunner.STAGES = STAGES
