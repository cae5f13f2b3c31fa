"""The doc_preprocessor runner: turn pages upright, for its own route and in-process for others.

Stages (``STAGES``): ``image``, ``pdf`` (fan out the pages), ``page``,
``document``. A pipeline with ``SubPipelines.DocPreprocessor`` (OCR, tables,
seals) calls :meth:`DocPreprocessorRunner.preprocess` on each page before
reading it, through :func:`preprocessor_of`: one 224x224 classifier call is
far cheaper than a hop through the rings with the page's pixels.

The classifier (PP-LCNet_x1_0_doc_ori) sees the page as PaddleX's image
classification does: RGB, the short side resized to 256, a 224 centre crop,
ImageNet normalisation; its label is how far to turn the page back,
counter-clockwise (a page scanned a quarter turn clockwise reads 90).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pxserve.shared.messages import Outcome, Task
from pxserve.shared.pipelines import LoadedModel, RunnerContext
from pxserve.shared.pipelines.doc_preprocessor import ORIENTATION, SUB_PIPELINE, DocParams, DocPreprocessor
from pxserve.shared.stages import Stage, StageTable
from pxserve.workers import pdf_pages as pdf
from pxserve.workers.page_images import decode_bgr, png_base64, rotate
from pxserve.workers.preprocess import Preprocessor

DEFAULT_ANGLES = (0, 90, 180, 270)


@dataclass(frozen=True)
class Preprocessed:
    """A page as the next stage should read it, and what was done to it."""

    image: np.ndarray  # BGR
    angle: int  # -1: not classified
    orientation: bool
    unwarping: bool

    def result(self) -> dict[str, Any]:
        """``doc_preprocessor_res`` inside a parent's prunedResult (PaddleX's keys)."""
        return {
            "model_settings": {
                "use_doc_orientation_classify": self.orientation,
                "use_doc_unwarping": self.unwarping,
            },
            "angle": self.angle,
        }


class DocPreprocessorRunner:
    def __init__(
        self, models: dict[str, LoadedModel], pipeline: DocPreprocessor, context: RunnerContext
    ) -> None:
        model = models.get(ORIENTATION)
        self.classifier = model.backend if model is not None else None
        self.preprocess_input = Preprocessor(model.model.transform_ops) if model is not None else None
        labels = model.model.post_process("Topk").get("label_list") if model is not None else None
        self.angles = [int(str(label).split("_")[0]) for label in labels] if labels else list(DEFAULT_ANGLES)
        self.orientation_default = pipeline.orientation_default
        self.stage_name = context.stage_name
        self.serving = pipeline.config.Serving
        self.max_pdf_pages = pipeline.max_pdf_pages
        self.page_limits = pdf.PageLimits(
            self.serving.max_pixels, self.serving.max_side, self.serving.max_stream_pages
        )

    # -- in-process, for other pipelines -----------------------------------------
    def resolve(self, orientation: bool | None, unwarping: bool | None, parent_default: bool) -> bool | None:
        """For a parent's request, as PaddleX decides it: None when the preprocessor does not
        run, else whether it classifies the orientation. Both switches unset means the
        parent's ``use_doc_preprocessor``, with this config's own defaults."""
        unset = orientation is None and unwarping is None
        if not (parent_default if unset else orientation or unwarping):
            return None
        return self.orientation_default if orientation is None else orientation

    def preprocess(
        self, images: list[np.ndarray], orientation: bool, unwarping: bool = False
    ) -> list[Preprocessed]:
        """Each page turned upright (one classifier call for all of them)."""
        if not orientation or self.classifier is None or not images:
            return [Preprocessed(image, -1, orientation, unwarping) for image in images]
        assert self.preprocess_input is not None
        batch = np.stack([self.preprocess_input(_as_rgb(image)) for image in images])
        scores = self.classifier.infer(batch)
        angles = [self.angles[int(row.argmax())] for row in scores]
        return [
            Preprocessed(rotate(image, angle), angle, True, unwarping)
            for image, angle in zip(images, angles, strict=True)
        ]

    # -- its own route ---------------------------------------------------------------
    def run(self, tasks: list[Task]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(tasks)
        pages: list[tuple[int, Task, DocParams, np.ndarray, dict[str, Any] | None]] = []
        for slot, task in enumerate(tasks):
            item, params = STAGES.handle(self, slot, task, "doc_preprocessor")
            if isinstance(item, tuple):
                pages.append((slot, task, params, *item))
            elif isinstance(item, dict):
                outcomes[slot] = Outcome.success(task.request_id, item)
            else:
                outcomes[slot] = item
        by_switch: dict[bool, list[int]] = {}
        for i, (_, _, params, _, _) in enumerate(pages):
            wanted = self.orientation_default if params.orientation is None else params.orientation
            by_switch.setdefault(bool(wanted), []).append(i)
        for wanted, members in by_switch.items():
            done = self.preprocess([pages[i][3] for i in members], wanted)
            for i, page in zip(members, done, strict=True):
                slot, task, params, original, data_info = pages[i]
                visualize = self.serving.visualize if params.visualize is None else params.visualize
                entry = _entry(original, page, visualize)
                result = (
                    entry
                    if data_info is None
                    else {"docPreprocessingResults": [entry], "dataInfo": data_info}
                )
                outcomes[slot] = Outcome.success(task.request_id, result)
        return [o for o in outcomes if o is not None]

    def image_page(self, slot: int, task: Task, params: DocParams) -> tuple[np.ndarray, dict[str, Any]]:
        image = decode_bgr(task.image)
        height, width = image.shape[:2]
        return image, {"width": width, "height": height, "type": "image"}

    def pdf_page(self, slot: int, task: Task, params: DocParams) -> tuple[np.ndarray, None]:
        return pdf.render_one(task.image, int(params.page or 0), self.page_limits), None

    def split_pdf(self, slot: int, task: Task, params: DocParams) -> Outcome:
        max_pages = params.max_pages or self.max_pdf_pages
        return pdf.split_by_stages(task, params, STAGES, self.stage_name, max_pages, self.page_limits)

    def document(self, slot: int, task: Task, params: pdf.DocumentParams) -> dict[str, Any]:
        return {"docPreprocessingResults": params.children, "dataInfo": params.data_info}


def _as_rgb(image: np.ndarray):  # -> PIL.Image.Image, as the classification preprocessing takes it
    from PIL import Image

    return Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def _entry(original: np.ndarray, page: Preprocessed, visualize: bool) -> dict[str, Any]:
    """One ``docPreprocessingResults`` entry."""
    from pxserve.workers.ocr import visualize as draw

    return {
        "outputImage": png_base64(page.image),
        "prunedResult": page.result(),
        "docPreprocessingImage": draw.to_jpeg_base64(draw.side_by_side(original, page))
        if visualize
        else None,
        "inputImage": draw.to_jpeg_base64(draw.bgr_to_image(original)) if visualize else None,
    }


def preprocessor_of(context: RunnerContext) -> DocPreprocessorRunner | None:
    """The DocPreprocessor sub-pipeline's runner, for calling in-process (None: not configured)."""
    runner = context.subs.get(SUB_PIPELINE)
    runner = getattr(runner, "own", runner)  # a composed runner's own part
    return runner if isinstance(runner, DocPreprocessorRunner) else None


STAGES = StageTable(
    Stage("image", DocParams, "decode an image and turn it upright", DocPreprocessorRunner.image_page),
    Stage(
        "pdf", DocParams, "check a PDF, fan out its pages, then the document", DocPreprocessorRunner.split_pdf
    ),
    Stage(
        "page",
        DocParams,
        "render one page of the PDF payload and turn it upright",
        DocPreprocessorRunner.pdf_page,
    ),
    Stage(
        "document",
        pdf.DocumentParams,
        "a PDF's result from its pages' results",
        DocPreprocessorRunner.document,
    ),
)
