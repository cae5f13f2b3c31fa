"""The pipeline registry: one module per pipeline, found by its name.

A pipeline module defines a :class:`Pipeline` subclass and exposes it as
``PIPELINE``. The front uses its route, request model and :meth:`parse`;
workers build the runner that :attr:`Pipeline.runner` names
(``"module:Class"``), which only the worker side imports
(workers/composed_runner.py). So shared/ never imports workers/, and
importing a pipeline module is safe in the front process.

A pipeline names the models it needs by their ``SubModules`` keys
(:meth:`Pipeline.model_keys`); every worker loads all of them, each with its
own backend, and the runner gets them by key. A runner may split its work
into stages and fan out (see shared/messages.py); the engine needs to know
nothing about which.

Pipelines built from pipelines: a config's ``SubPipelines`` (PaddleX's
form) become :attr:`Pipeline.sub_pipelines`, each a whole pipeline with its
own models and settings, living under a namespace (its SubPipelines name).
Its models are keyed ``"<name>/<key>"`` and its stages ``"<name>/<stage>"``,
so two OCR sub-pipelines with different models sit side by side. It serves
under its parent's route, so its parent's ``Serving`` limits apply to it.
Worker-side, ``build_runner`` (workers/composed_runner.py) gives each one
its own runner and routes each task of a batch to the runner whose
namespace its stage names; a parent uses a
sub-pipeline's stages by fanning out to them (``stage_name`` in
:class:`RunnerContext` qualifies a name).

Adding a pipeline means adding ``shared/pipelines/<name>.py`` (the module
name is ``pipeline_name`` in lower case, "-" as "_"), its worker-side code under
``workers/`` and ``configs/<pipeline_name>.yaml``; nothing else changes.
A pipeline from another package registers its module under the entry-point
group ``pxserve.pipelines`` (name: its ``pipeline_name``).
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from pxserve.shared.config import ConfigError, ModelSettings, PipelineConfig
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import Outcome, Task

if TYPE_CHECKING:
    from pxserve.shared.devices import Device
    from pxserve.shared.model_dir import ModelDir
    from pxserve.workers.backends import InferenceBackend


class Runner(Protocol):
    """Worker-side: turn one batch of tasks into one outcome per task, in order."""

    def run(self, tasks: list[Task]) -> list[Outcome]: ...


class DocumentFormat(Protocol):
    """Front-side: a whole document written from its pages' entries, in page order.

    A pipeline offers one per media type (:attr:`Pipeline.document_formats`); a client
    that prefers that type in its Accept header gets the document instead of JSON
    (frontend/page_answers.py). Made once per request, with the document's dataInfo.
    """

    media_type: ClassVar[str]  # the Content-Type of the answer
    summary: ClassVar[str]  # what the client gets, for /openapi.json
    streams: ClassVar[bool]  # True: bytes go out as pages arrive; False: the answer is made at the end

    def add(self, entry: dict[str, Any]) -> bytes: ...  # the next page's entry; bytes to send now

    def finish(self) -> bytes: ...  # the rest of the document

    def fail(self, status: int, message: str) -> bytes: ...  # a streamed document's end, when a page fails


NAMESPACE_SEPARATOR = "/"


@dataclass(frozen=True)
class RunnerContext:
    """What a worker tells its runner besides the models."""

    workers: int = 1  # how many workers serve the pipeline: how wide a fan-out usefully goes
    # Call between a long batch's model calls (a page's detection, a group of
    # lines): it beats the heartbeat the supervisor watches, and it is where
    # the worker lets other pipelines' waiting work run (fair sharing).
    beat: Callable[[], None] = lambda: None
    # Whether a task (by request_id) was abandoned since the batch began: a
    # runner with several steps skips what nobody waits for any more, and
    # answers it with Outcome.dropped.
    cancelled: Callable[[int], bool] = lambda request_id: False
    namespace: str = ""  # "" for a served pipeline; its SubPipelines name (path) for a sub-pipeline
    # The sub-pipelines' runners, by SubPipelines name: a runner may call one in-process
    # (a page turned upright before it is read) instead of fanning out to its stages.
    subs: Mapping[str, Runner] = field(default_factory=dict)

    def stage_name(self, stage: str) -> str:
        """The name a task must carry to reach ``stage`` of this runner (for fan-out)."""
        return f"{self.namespace}{NAMESPACE_SEPARATOR}{stage}" if self.namespace else stage

    def inside(self, name: str) -> RunnerContext:
        """The context of sub-pipeline ``name``."""
        return RunnerContext(self.workers, self.beat, self.cancelled, self.stage_name(name))

    def with_subs(self, subs: Mapping[str, Runner]) -> RunnerContext:
        return replace(self, subs=subs)


@dataclass(frozen=True)
class LoadedModel:
    """One of a pipeline's models as a worker holds it."""

    model: ModelDir
    backend: InferenceBackend
    device: Device


class Pipeline(ABC):
    name: ClassVar[str]  # pipeline_name in the YAML
    route: ClassVar[str]  # the HTTP path, as PaddleX serves it
    sub_module: ClassVar[str] = ""  # the SubModules key of a single-model pipeline
    request_model: ClassVar[type[BaseModel]]
    result_model: ClassVar[type[BaseModel]]  # the envelope's ``result``, for /openapi.json
    summary: ClassVar[str] = ""
    # For a pipeline that reads PDFs: the result's list with one entry per page (or image),
    # beside ``dataInfo``. Its route can then stream a document page by page (frontend/page_answers.py).
    pages_field: ClassVar[str] = ""
    # Whole documents the route can answer instead of JSON, by media type (Accept): e.g. Markdown.
    document_formats: ClassVar[dict[str, Callable[[dict[str, Any]], DocumentFormat]]] = {}
    # The worker-side runner, as "module:attribute": called with (models by key, this pipeline,
    # RunnerContext). A name, not an import: shared/ never imports workers/.
    runner: ClassVar[str]
    # Models pxserve carries itself: model_name -> the module that builds it
    # (it offers model_dir(), is_cached() and a __main__ that exports it).
    embedded_models: ClassVar[dict[str, str]] = {}

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        if self.sub_module:
            self.model_settings: ModelSettings = config.sub_module(self.sub_module)
        # A sub-pipeline is served under its parent's route and limits: its parent's Serving.
        self.sub_pipelines: dict[str, Pipeline] = {
            name: get_pipeline(sub.model_copy(update={"Serving": config.Serving}))
            for name, sub in config.SubPipelines.items()
        }

    def setting(self, name: str, default: Any) -> Any:
        """A top-level setting of the pipeline's config (``use_layout_detection``...), or ``default``."""
        return (self.config.model_extra or {}).get(name, default)

    def module_setting(self, key: str, name: str, default: Any) -> Any:
        """A SubModules entry's own setting (``threshold``, ``layout_nms``...), or ``default``."""
        module = self.config.SubModules.get(key)
        value = (module.model_extra or {}).get(name) if module is not None else None
        return default if value is None else value

    def model_keys(self) -> list[str]:
        """The SubModules this configuration needs loaded: ``sub_module``, or none (a pipeline
        made only of sub-pipelines)."""
        return [self.sub_module] if self.sub_module else []

    def all_models(self) -> list[tuple[str, Pipeline, str]]:
        """(namespaced key, owning pipeline, own key) of its models and its sub-pipelines'."""
        found = [(key, self, key) for key in self.model_keys()]
        for name, sub in self.sub_pipelines.items():
            found += [(f"{name}{NAMESPACE_SEPARATOR}{k}", owner, own) for k, owner, own in sub.all_models()]
        return found

    def check_all(self) -> None:
        """:meth:`check_startup` of this pipeline and of every sub-pipeline."""
        self.check_startup()
        for sub in self.sub_pipelines.values():
            sub.check_all()

    def model_source(self, key: str | None = None) -> tuple[str, Path | None]:
        """(model name, directory); directory None means an embedded model to build."""
        key = key or self.sub_module
        settings = self.config.sub_module(key) if key else self.model_settings
        if settings.model_dir:
            return settings.model_name or Path(settings.model_dir).name, Path(settings.model_dir)
        if settings.model_name in self.embedded_models:
            return settings.model_name, None
        raise ConfigError(
            f"{self.config.source}: model {settings.model_name!r} has no model_dir and is not "
            f"embedded in pxserve (embedded: {', '.join(self.embedded_models) or 'none'}); "
            f"set SubModules.{key}.model_dir to an exported PaddleX model directory"
        )

    @property
    def max_pdf_pages(self) -> int:
        """``Serving.max_pdf_pages``, or PaddleX's own ``Serving.extra.max_num_input_imgs``."""
        paddlex = self.config.Serving.extra.get("max_num_input_imgs")
        return int(paddlex) if paddlex else self.config.Serving.max_pdf_pages

    def check_startup(self) -> None:
        """Front-side, before any worker starts: refuse settings this pipeline cannot serve."""
        return None

    @abstractmethod
    async def parse(self, request: Any, images: ImageLoader) -> Task:
        """Front-side: validated request -> its first task (the engine assigns the id)."""


ENTRY_POINT_GROUP = "pxserve.pipelines"


def module_name(pipeline_name: str) -> str:
    """The registry's module for a pipeline name ("PP-StructureV3" -> pp_structurev3)."""
    return pipeline_name.lower().replace("-", "_")


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def _plugins() -> dict[str, metadata.EntryPoint]:
    """Pipelines other packages register (entry-point group ``pxserve.pipelines``), by lower-case name."""
    return {ep.name.lower(): ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """The pipeline names pxserve serves, as PaddleX spells them."""
    built_in = [importlib.import_module(f"{__name__}.{m}").PIPELINE.name for m in _modules()]
    return sorted({*built_in, *(ep.name for ep in _plugins().values())})


def pipeline_class(name: str, source: str = "") -> type[Pipeline]:
    """The Pipeline subclass for a ``pipeline_name``: built in, or from a plugin package."""
    module = module_name(name)
    if module in _modules():
        return importlib.import_module(f"{__name__}.{module}").PIPELINE
    plugin = _plugins().get(name.lower())
    if plugin is not None:
        loaded = plugin.load()
        return getattr(loaded, "PIPELINE", loaded)
    raise ConfigError(
        f"{source}: pipeline_name {name!r} is not served by pxserve (available: {', '.join(available())})"
    )


def get_pipeline(config: PipelineConfig) -> Pipeline:
    """Instantiate the pipeline that a config names (and the sub-pipelines it lists)."""
    return pipeline_class(config.pipeline_name, config.source)(config)
