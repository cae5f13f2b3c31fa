"""A pipeline built from two OCR sub-pipelines, installed as a plugin.

``ocr_side_by_side`` reads one file with two OCR sub-pipelines (``First``
and ``Second`` in its SubPipelines), each with its own models and settings,
and answers both results. It owns no model and no OCR code: its front side
parses with First's OCR parser, and its one worker stage fans out to the
sub-pipelines' own stages (``First/image``, ``Second/pdf``, ...), whose
own fan-outs (text lines, PDF pages) stay in their namespaces.

The tests register it through the entry-point group ``pxserve.pipelines``,
as a third-party package would, so nothing in pxserve names it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import PARENT_PAYLOAD, FanOut, Outcome, Task
from pxserve.shared.pipelines import LoadedModel, Pipeline, RunnerContext
from pxserve.shared.pipelines.ocr import OcrParams, OcrRequest, OcrResult
from pxserve.shared.stages import Stage, StageTable

SUBS = ("First", "Second")


class SideBySideResult(BaseModel):
    first: OcrResult
    second: OcrResult


class BothParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ocr: OcrParams = Field(default_factory=OcrParams)
    stage: str = "image"  # the OCR stage the file starts at: image or pdf


class CombineParams(BaseModel):
    children: list[dict[str, Any]] = []


class SideBySide(Pipeline):
    name = "ocr_side_by_side"
    route = "/ocr-side-by-side"
    runner = f"{__name__}:SideBySideRunner"
    summary = "Read a file with two OCR sub-pipelines"
    request_model = OcrRequest
    result_model = SideBySideResult

    async def parse(self, request: OcrRequest, images: ImageLoader) -> Task:
        first = await self.sub_pipelines["First"].parse(request, images)
        params = BothParams(ocr=OcrParams.model_validate(first.params), stage=first.stage)
        return STAGES["both"].task(params, first.image)


class SideBySideRunner:
    def __init__(self, models: dict[str, LoadedModel], pipeline: SideBySide, context: RunnerContext) -> None:
        self.context = context

    def run(self, tasks: list[Task]) -> list[Outcome]:
        outcomes = []
        for slot, task in enumerate(tasks):
            stage = STAGES[task.stage]
            answer = stage.handler(self, slot, task, stage.read(task))
            outcomes.append(
                answer if isinstance(answer, Outcome) else Outcome.success(task.request_id, answer)
            )
        return outcomes

    def both(self, slot: int, task: Task, params: BothParams) -> Outcome:
        from pxserve.workers.ocr.runner import STAGES as OCR_STAGES

        stage = OCR_STAGES[params.stage]
        children = [
            stage.task(params.ocr, PARENT_PAYLOAD, self.context.inside(sub).stage_name) for sub in SUBS
        ]
        then = STAGES["combine"].task(CombineParams(), b"", self.context.stage_name)
        return Outcome.fan_out(task.request_id, FanOut(children, then))

    def combine(self, slot: int, task: Task, params: CombineParams) -> dict[str, Any]:
        first, second = params.children
        return {"first": first, "second": second}


STAGES = StageTable(
    Stage("both", BothParams, "fan the file out to both OCR sub-pipelines", SideBySideRunner.both),
    Stage("combine", CombineParams, "both sub-pipelines' results as one", SideBySideRunner.combine),
)

PIPELINE = SideBySide
