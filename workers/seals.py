"""The seal_recognition runner.

``image`` / ``page``: read the page, turn it upright (DocPreprocessor,
in-process), find the seals (layout detection's "seal" regions, or the
whole page), then fan out one ``SealOCR`` image task per seal -- the OCR
runner with ``text_type: seal``, batched with every other seal being read
-- and finish in ``assemble``: PaddleX's prunedResult with one OCR result
per seal in ``seal_res_list``. ``pdf`` / ``document`` as every document
pipeline (workers/document_pages.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from pxserve.shared.messages import PARENT_PAYLOAD, FanOut, Outcome, Task
from pxserve.shared.pipelines import LoadedModel, RunnerContext
from pxserve.shared.pipelines.ocr import OcrParams
from pxserve.shared.pipelines.seal_recognition import LAYOUT, OCR_PIPELINE, SealParams, SealRecognition
from pxserve.shared.stages import Stage, StageTable
from pxserve.workers import layout as layouts
from pxserve.workers.document_pages import DocumentParams, DocumentRunner, Page
from pxserve.workers.ocr import visualize
from pxserve.workers.ocr.runner import STAGES as OCR_STAGES
from pxserve.workers.page_images import decode_bgr, encode_jpeg, encode_png


class AssembleParams(BaseModel):
    """A page whose seals were read: what the result needs besides the children (one per seal)."""

    model_config = ConfigDict(extra="forbid")

    model_settings: dict[str, bool]
    doc_preprocessor_res: dict[str, Any] | None = None
    layout_det_res: dict[str, Any] | None = None
    visualize: bool = False
    data_info: dict[str, Any] | None = None
    children: list[dict[str, Any]] = []


class SealRunner(DocumentRunner):
    def __init__(
        self, models: dict[str, LoadedModel], pipeline: SealRecognition, context: RunnerContext
    ) -> None:
        super().__init__(pipeline, context)
        layout = models.get(LAYOUT)
        self.layout = layouts.LayoutDetector(layout.backend, layout.model) if layout is not None else None
        self.use_layout = bool(pipeline.setting("use_layout_detection", False)) and self.layout is not None
        self.layout_defaults = layouts.configured(pipeline, LAYOUT, unclip_ratio=1.0)
        self.ocr_stage = context.inside(OCR_PIPELINE).stage_name

    def run(self, tasks: list[Task]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for slot, task in enumerate(tasks):
            item, _ = STAGES.handle(self, slot, task, "seal_recognition")
            if isinstance(item, Page):
                item = self._fan_out(item)
            elif isinstance(item, dict):
                item = Outcome.success(task.request_id, item)
            outcomes.append(item)
        return outcomes

    def _find_seals(self, page: Page) -> None:
        self.upright(page)
        params: SealParams = page.params
        use_layout = self.use_layout if params.layout is None else params.layout
        height, width = page.image.shape[:2]
        if not (use_layout and self.layout is not None):
            page.regions = [[0, 0, width, height]]
            return
        options = {k: v for k, v in params.layout_options.model_dump().items() if v is not None}
        page.layout = layouts.detect_refined(self.layout, page.image, {**self.layout_defaults, **options})
        self.beat()
        page.regions = [b["coordinate"] for b in page.layout["boxes"] if b["label"].lower() == "seal"]

    def _fan_out(self, page: Page) -> Outcome:
        self._find_seals(page)
        params: SealParams = page.params
        ocr_params = OcrParams(det=params.det, score_thresh=params.score_thresh, visualize=params.visualize)
        height, width = page.image.shape[:2]
        children = []
        for x0, y0, x1, y1 in ((int(v) for v in region) for region in page.regions):
            whole = (x0, y0, x1, y1) == (0, 0, width, height)
            if whole and page.whole_file:
                payload: bytes = PARENT_PAYLOAD
            else:
                payload = encode_png(page.image if whole else page.image[y0:y1, x0:x1])
            children.append(OCR_STAGES["image"].task(ocr_params, payload, self.ocr_stage))
        visualize_on = self.visualize(params)
        then = AssembleParams(
            model_settings={
                "use_doc_preprocessor": page.doc is not None,
                "use_layout_detection": page.layout is not None,
            },
            doc_preprocessor_res=page.doc,
            layout_det_res=page.layout,
            visualize=visualize_on,
            data_info=page.data_info,
        )
        source = encode_jpeg(page.image) if visualize_on else b""
        plan = FanOut(children, STAGES["assemble"].task(then, source, self.stage_name))
        return Outcome.fan_out(page.task.request_id, plan)

    def assemble(self, slot: int, task: Task, params: AssembleParams) -> dict[str, Any]:
        entries = [(child.get("ocrResults") or [child])[0] for child in params.children]
        pruned: dict[str, Any] = {"model_settings": params.model_settings}
        if params.doc_preprocessor_res is not None:
            pruned["doc_preprocessor_res"] = params.doc_preprocessor_res
        if params.layout_det_res is not None:
            pruned["layout_det_res"] = params.layout_det_res
        pruned["seal_res_list"] = [entry["prunedResult"] for entry in entries]
        images: dict[str, str] | None = None
        input_image = None
        if params.visualize and len(task.image):
            page = decode_bgr(task.image)
            images = {}
            if params.layout_det_res is not None:
                images["layout_det_res"] = visualize.to_jpeg_base64(
                    visualize.draw_regions(page, params.layout_det_res)
                )
            for number, entry in enumerate(entries, start=1):
                if entry.get("ocrImage"):
                    images[f"seal_res_region{number}"] = entry["ocrImage"]
            input_image = visualize.to_jpeg_base64(visualize.bgr_to_image(page))
        entry = {"prunedResult": pruned, "outputImages": images, "inputImage": input_image}
        return self.wrap(entry, params.data_info)


STAGES = StageTable(  # the first is what a task with no stage runs
    Stage("image", SealParams, "decode an image, find its seals, fan out their OCR", SealRunner.image_page),
    Stage("pdf", SealParams, "check a PDF, fan out its pages, then the document", SealRunner.split_pdf),
    Stage("page", SealParams, "render one page of the PDF payload, then as image", SealRunner.pdf_page),
    Stage("assemble", AssembleParams, "a page's result from its seals' OCR results", SealRunner.assemble),
    Stage("document", DocumentParams, "a PDF's result from its pages' results", SealRunner.document),
)
SealRunner.STAGES = STAGES
