"""PaddleX's doc_preprocessor pipeline, at ``POST /document-preprocessing``.

It turns a page upright before anything reads it: a classifier tells
0/90/180/270 degrees (SubModules.DocOrientationClassify; embedded default
PP-LCNet_x1_0_doc_ori, see workers/doc_models.py) and the page is turned
back. Unwarping (UVDoc) is not served: no licensed export of it exists to
embed or to test against, so asking for it is one clear line at startup or
a 422, never a silent skip.

Other pipelines (OCR, table_recognition, seal_recognition) list it as
``SubPipelines.DocPreprocessor`` as PaddleX does; their requests'
``useDocOrientationClassify`` / ``useDocUnwarping`` reach it through
:func:`check_switches` (front) and the worker-side runner
(workers/doc_preprocessor.py), which they call in-process.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pxserve.shared.config import ConfigError
from pxserve.shared.errors import invalid
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import Task
from pxserve.shared.pipelines import Pipeline
from pxserve.shared.pipelines._document_requests import FileRequest

ORIENTATION, UNWARPING = "DocOrientationClassify", "DocUnwarping"
SUB_PIPELINE = "DocPreprocessor"  # the SubPipelines name other pipelines give it
NO_UNWARPING = "document unwarping (UVDoc) is not served by pxserve; send false or leave it out"


class DocPreprocessorRequest(FileRequest):
    """Only the shared fields: the file, the two switches, visualize."""


class DocParams(BaseModel):
    """The stages' parameters: one request's switches (None: the config's)."""

    model_config = ConfigDict(extra="forbid")

    orientation: bool | None = None
    unwarping: bool | None = None
    visualize: bool | None = None
    max_pages: int | None = None  # pdf: pages to read
    page: int | None = None  # page: which page of the PDF payload


class DocPrunedResult(BaseModel):
    model_settings: dict[str, bool]
    angle: int = Field(
        description="Degrees the page was turned back (counter-clockwise); -1 when not classified"
    )


class DocPreprocessingResult(BaseModel):
    outputImage: str = Field(description="Base64 PNG: the page as the next stage sees it")
    prunedResult: DocPrunedResult
    docPreprocessingImage: str | None = None
    inputImage: str | None = None


class DocPreprocessorResult(BaseModel):
    docPreprocessingResults: list[DocPreprocessingResult]
    dataInfo: dict[str, Any]


class DocPreprocessor(Pipeline):
    name = "doc_preprocessor"
    route = "/document-preprocessing"
    runner = "pxserve.workers.doc_preprocessor:DocPreprocessorRunner"
    summary = "Turn document pages upright (PaddleX doc_preprocessor API)"
    request_model = DocPreprocessorRequest
    result_model = DocPreprocessorResult
    pages_field = "docPreprocessingResults"
    embedded_models = {"PP-LCNet_x1_0_doc_ori": "pxserve.workers.doc_models"}

    @property
    def has_orientation(self) -> bool:
        return ORIENTATION in self.config.SubModules

    def model_keys(self) -> list[str]:
        return [ORIENTATION] if self.has_orientation else []

    @property
    def orientation_default(self) -> bool:
        extra = self.config.model_extra or {}
        return bool(extra.get("use_doc_orientation_classify", True)) and self.has_orientation

    def check_startup(self) -> None:
        extra = self.config.model_extra or {}
        if extra.get("use_doc_unwarping"):
            raise ConfigError(f"{self.config.source}: use_doc_unwarping: {NO_UNWARPING.split(';')[0]}")
        if extra.get("use_doc_orientation_classify") and not self.has_orientation:
            raise ConfigError(
                f"{self.config.source}: use_doc_orientation_classify is true, "
                f"but SubModules has no {ORIENTATION}"
            )

    def check_switches(self, orientation: bool | None, unwarping: bool | None) -> None:
        """Front-side: 422 for a switch this server cannot honour."""
        if unwarping:
            raise invalid("useDocUnwarping", NO_UNWARPING)
        if orientation and not self.has_orientation:
            raise invalid(
                "useDocOrientationClassify",
                f"this server was started without a document orientation model (SubModules.{ORIENTATION})",
            )

    async def parse(self, request: DocPreprocessorRequest, images: ImageLoader) -> Task:
        self.check_switches(request.useDocOrientationClassify, request.useDocUnwarping)
        data, is_pdf = await images.read_document(request.file, request.fileType)
        params = DocParams(
            orientation=request.useDocOrientationClassify,
            unwarping=request.useDocUnwarping,
            visualize=request.visualize,
        )
        if is_pdf:
            params.max_pages = self.max_pdf_pages
        return Task(0, params.model_dump(exclude_none=True), data, "pdf" if is_pdf else "image")


def check_switches(pipeline: Pipeline, orientation: bool | None, unwarping: bool | None) -> None:
    """Front-side, for a pipeline that has (or lacks) a DocPreprocessor sub-pipeline."""
    sub = pipeline.sub_pipelines.get(SUB_PIPELINE)
    if isinstance(sub, DocPreprocessor):
        sub.check_switches(orientation, unwarping)
    elif orientation or unwarping:
        field = "useDocOrientationClassify" if orientation else "useDocUnwarping"
        raise invalid(field, f"this pipeline's config has no SubPipelines.{SUB_PIPELINE}")


PIPELINE = DocPreprocessor
