"""What every page-reading document pipeline's runner does before its own work.

Tables and seals (and the next such pipeline) take an image or a PDF,
turn each page upright with the DocPreprocessor sub-pipeline, look for
regions on it with a layout model, and put a PDF's pages back together at
the end. :class:`DocumentRunner` holds those steps once; a runner derives
from it, names its ``STAGES`` (with ``image``, ``pdf``, ``page`` and
``document`` pointing at the methods here) and its result list's key, and
does the rest with the :class:`Page` these give it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from pxserve.shared.messages import Outcome, Task
from pxserve.shared.pipelines import Pipeline, RunnerContext
from pxserve.shared.stages import StageTable
from pxserve.workers import pdf_pages as pdf
from pxserve.workers.doc_preprocessor import preprocessor_of
from pxserve.workers.page_images import decode_bgr
from pxserve.workers.pdf_pages import DocumentParams


@dataclass
class Page:
    slot: int  # its task's place in the batch
    task: Task
    params: Any  # the stage's parameters (the pipeline's own type)
    image: np.ndarray  # BGR; upright once preprocessed
    data_info: dict[str, Any] | None  # set for a whole-image request
    doc: dict[str, Any] | None = None  # doc_preprocessor_res, when it ran
    unchanged: bool = True  # still the request's file (children may read the parent's payload)
    layout: dict[str, Any] | None = None  # layout_det_res, when layout detection ran
    regions: list[list[float]] = field(default_factory=list)  # the boxes the pipeline reads

    @property
    def whole_file(self) -> bool:
        """The page is the request's own image, untouched: a child can run on PARENT_PAYLOAD."""
        return self.unchanged and self.data_info is not None


class DocumentRunner:
    STAGES: ClassVar[StageTable]

    def __init__(self, pipeline: Pipeline, context: RunnerContext) -> None:
        self.results_key = pipeline.pages_field  # "tableRecResults", "sealRecResults"
        self.preprocessor = preprocessor_of(context)
        self.stage_name = context.stage_name
        self.beat = context.beat
        serving = pipeline.config.Serving
        self.visualize_default = serving.visualize
        self.use_doc_preprocessor = bool(
            (pipeline.config.model_extra or {}).get("use_doc_preprocessor", True)
        )
        self.max_pdf_pages = pipeline.max_pdf_pages
        self.page_limits = pdf.PageLimits(serving.max_pixels, serving.max_side, serving.max_stream_pages)

    def visualize(self, params: Any) -> bool:
        return self.visualize_default if params.visualize is None else bool(params.visualize)

    # -- stages --------------------------------------------------------------------
    def image_page(self, slot: int, task: Task, params: Any) -> Page:
        image = decode_bgr(task.image)
        height, width = image.shape[:2]
        return Page(slot, task, params, image, {"width": width, "height": height, "type": "image"})

    def pdf_page(self, slot: int, task: Task, params: Any) -> Page:
        return Page(
            slot, task, params, pdf.render_one(task.image, int(params.page or 0), self.page_limits), None
        )

    def split_pdf(self, slot: int, task: Task, params: Any) -> Outcome:
        max_pages = params.max_pages or self.max_pdf_pages
        return pdf.split_by_stages(
            task, params, type(self).STAGES, self.stage_name, max_pages, self.page_limits
        )

    def document(self, slot: int, task: Task, params: DocumentParams) -> dict[str, Any]:
        return {self.results_key: params.children, "dataInfo": params.data_info}

    # -- steps -----------------------------------------------------------------------
    def upright(self, page: Page) -> None:
        """Turn the page upright when the request (or the config) asks for it."""
        if self.preprocessor is None:
            return
        params = page.params
        orientation = self.preprocessor.resolve(
            params.doc_orientation, params.doc_unwarping, self.use_doc_preprocessor
        )
        if orientation is None:
            return
        done = self.preprocessor.preprocess([page.image], orientation)[0]
        page.doc, page.image = done.result(), done.image
        page.unchanged = done.angle in (-1, 0)

    def wrap(self, entry: dict[str, Any], data_info: dict[str, Any] | None) -> dict[str, Any]:
        """A page's entry as the whole result of an image request (a PDF page's stays an entry)."""
        return entry if data_info is None else {self.results_key: [entry], "dataInfo": data_info}
