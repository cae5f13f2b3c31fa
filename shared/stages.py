"""Stages: the named steps a runner offers, each with its parameters' type.

A runner's stages sit in a :class:`StageTable`. A task names its stage;
the runner looks the stage up and reads the task's parameters with the
stage's own pydantic model, and whoever creates a task for a stage (the
front's ``parse``, a fan-out, a parent pipeline using a sub-pipeline's
stages) builds it from the same model with :meth:`Stage.task`. So the
parameters are written and read by one type, never by hand on each side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from pxserve.shared.errors import RequestError
from pxserve.shared.messages import Outcome, Task

P = TypeVar("P", bound=BaseModel)


class StageError(Exception):
    """A task named a stage that does not exist, or carried parameters its stage cannot read."""


@dataclass(frozen=True)
class Stage(Generic[P]):
    name: str
    params: type[P]
    does: str  # one line: what the stage does
    # The runner's method that takes (slot in the batch, task, its parameters).
    handler: Callable[..., Any]

    def task(self, params: P, payload: bytes | memoryview, stage_name: Callable[[str], str] = str) -> Task:
        """A task for this stage; ``stage_name`` qualifies the name for a sub-pipeline's namespace."""
        return Task(0, params.model_dump(exclude_none=True), payload, stage_name(self.name))

    def read(self, task: Task) -> P:
        try:
            return self.params.model_validate(task.params)
        except ValidationError as exc:
            raise StageError(f"stage {self.name!r}: bad parameters: {exc.errors()[:1]}") from None


class StageTable:
    """Stages by name; the first one is what a task with no stage runs."""

    def __init__(self, *stages: Stage[Any]) -> None:
        self._stages = {stage.name: stage for stage in stages}
        self.default = stages[0]

    def __getitem__(self, name: str) -> Stage[Any]:
        if not name:
            return self.default
        try:
            return self._stages[name]
        except KeyError:
            raise StageError(f"unknown stage {name!r} (known: {', '.join(self._stages)})") from None

    def __iter__(self):
        return iter(self._stages.values())

    def handle(self, runner: Any, slot: int, task: Task, label: str) -> tuple[Any, BaseModel | None]:
        """Run ``task``'s stage on ``runner``: (what its handler gave, the parameters it read).

        A file that cannot be read is the client's error (its status); a stage that does
        not exist or parameters that do not fit it are the server's (500, ``label``: why).
        """
        try:
            stage = self[task.stage]
            params = stage.read(task)
            return stage.handler(runner, slot, task, params), params
        except RequestError as exc:
            return Outcome.failure(task.request_id, exc.status, exc.message), None
        except StageError as exc:
            return Outcome.failure(task.request_id, 500, f"{label}: {exc}"), None
