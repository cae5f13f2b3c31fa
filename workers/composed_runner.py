"""A pipeline's runner composed with its sub-pipelines' runners, and warming them up.

Worker-side half of pipelines built from pipelines (see
shared/pipelines/__init__.py for the namespaces): each sub-pipeline gets the
runner it would have if served alone, and :class:`ComposedRunner` routes
each task of a batch to the runner its stage's namespace names.
"""

from __future__ import annotations

import importlib
from dataclasses import replace

from pxserve.shared.messages import FAN_OUT, Outcome, Task
from pxserve.shared.pipelines import NAMESPACE_SEPARATOR, LoadedModel, Pipeline, Runner, RunnerContext


class ComposedRunner:
    """A pipeline's runner and its sub-pipelines' runners, as one.

    Each task goes to the sub-pipeline its stage's first segment names
    (``"GeneralOCR/lines"``; a nested one routes the rest again), or to the
    pipeline's own runner; each runner sees only its own tasks, with the
    namespace taken off, so a sub-pipeline's runner is exactly the one it
    has when served alone. Outcomes come back in the batch's order.
    """

    def __init__(self, own: Runner, subs: dict[str, Runner]) -> None:
        self.own = own
        self.subs = subs  # namespace -> runner (itself composed if it has sub-pipelines)

    def _route(self, stage: str) -> tuple[Runner, str]:
        name, sep, rest = stage.partition(NAMESPACE_SEPARATOR)
        if sep and name in self.subs:
            return self.subs[name], rest
        return self.own, stage

    def run(self, tasks: list[Task]) -> list[Outcome]:
        parts: dict[int, tuple[Runner, list[Task]]] = {}
        for task in tasks:
            runner, stage = self._route(task.stage)
            local = replace(task, stage=stage, pipeline="")
            parts.setdefault(id(runner), (runner, []))[1].append(local)
        by_id: dict[int, Outcome] = {}
        for runner, part in parts.values():
            for outcome in runner.run(part):
                by_id[outcome.request_id] = outcome
        return [by_id[t.request_id] for t in tasks if t.request_id in by_id]


def warm_up(runner: Runner, probe: bytes, sizes: list[int]) -> None:
    """Run a probe image through a runner (and each part of a composed one) at each batch size.

    A runner's first stage must take an image with no parameters; a fan-out
    counts as success. Then its own ``warm_up()``, if it has one, for models
    a blank image never reaches (a recognizer after a detector).
    """
    if isinstance(runner, ComposedRunner):
        for part in (runner.own, *runner.subs.values()):
            warm_up(part, probe, sizes)
        return
    for size in sizes:
        outcomes = runner.run([Task(i + 1, {}, probe) for i in range(size)])
        failed = next((o for o in outcomes if o.status not in (200, FAN_OUT)), None)
        if failed is not None:
            raise RuntimeError(
                f"warm-up inference on a test image failed: {failed.message} (see the warning above)"
            )
    own_warm_up = getattr(runner, "warm_up", None)
    if own_warm_up is not None:
        own_warm_up()


def build_runner(pipeline: Pipeline, models: dict[str, LoadedModel], context: RunnerContext) -> Runner:
    """Worker-side: the runner of ``pipeline`` and, composed with it, its sub-pipelines'.

    ``models`` holds every namespaced key of :meth:`Pipeline.all_models`.
    """
    subs = {}
    for name, sub in pipeline.sub_pipelines.items():
        prefix = f"{name}{NAMESPACE_SEPARATOR}"
        sub_models = {k[len(prefix) :]: m for k, m in models.items() if k.startswith(prefix)}
        subs[name] = build_runner(sub, sub_models, context.inside(name))
    own_models = {k: m for k, m in models.items() if NAMESPACE_SEPARATOR not in k}
    own = create_runner(pipeline, own_models, context.with_subs(subs))
    return ComposedRunner(own, subs) if subs else own


def create_runner(pipeline: Pipeline, models: dict[str, LoadedModel], context: RunnerContext) -> Runner:
    """The runner :attr:`Pipeline.runner` names (``"module:attribute"``), for this pipeline alone."""
    module, _, attribute = pipeline.runner.partition(":")
    factory = getattr(importlib.import_module(module), attribute)
    return factory(models, pipeline, context)
