"""The pipeline registry: one module per pipeline, found by its name.

A pipeline module defines a :class:`Pipeline` subclass and exposes it as
``PIPELINE``. The front uses its route, request model and :meth:`parse`;
workers use :meth:`create_runner`. Heavy engines are imported only by the
runner, so importing a pipeline module is safe in the front process.

Adding a pipeline means adding ``shared/pipelines/<name>.py`` and
``configs/<name>.yaml``; nothing else in the server changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from pxserve.shared.config import ConfigError, ModelSettings, PipelineConfig
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import Outcome, Task

if TYPE_CHECKING:
    from pxserve.shared.model_dir import ModelDir
    from pxserve.workers.backends import InferenceBackend


class Runner(Protocol):
    """Worker-side: turn one batch of tasks into one outcome per task, in order."""

    def run(self, tasks: list[Task]) -> list[Outcome]: ...


class Pipeline(ABC):
    name: ClassVar[str]  # pipeline_name in the YAML
    route: ClassVar[str]  # the HTTP path, as PaddleX serves it
    sub_module: ClassVar[str]  # the SubModules key that names the model
    request_model: ClassVar[type[BaseModel]]
    result_model: ClassVar[type[BaseModel]]  # the envelope's ``result``, for /openapi.json
    summary: ClassVar[str] = ""
    # Models pxserve carries itself: model_name -> the module that builds it
    # (it offers model_dir(), is_cached() and a __main__ that exports it).
    embedded_models: ClassVar[dict[str, str]] = {}

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.model_settings: ModelSettings = config.sub_module(self.sub_module)

    def model_source(self) -> tuple[str, Path | None]:
        """(model name, directory); directory None means an embedded model to build."""
        settings = self.model_settings
        if settings.model_dir:
            return settings.model_name or Path(settings.model_dir).name, Path(settings.model_dir)
        if settings.model_name in self.embedded_models:
            return settings.model_name, None
        raise ConfigError(
            f"{self.config.source}: model {settings.model_name!r} has no model_dir and is not "
            f"embedded in pxserve (embedded: {', '.join(self.embedded_models) or 'none'}); "
            f"set SubModules.{self.sub_module}.model_dir to an exported PaddleX model directory"
        )

    @abstractmethod
    async def parse(self, request: Any, images: ImageLoader) -> tuple[bytes, dict[str, Any]]:
        """Front-side: validated request -> (image bytes, task parameters)."""

    @abstractmethod
    def create_runner(self, model: ModelDir, backend: InferenceBackend) -> Runner:
        """Worker-side: build what turns batches into outcomes."""


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_pipeline(config: PipelineConfig) -> Pipeline:
    """Instantiate the pipeline that a config names."""
    name = config.pipeline_name
    if name not in available():
        raise ConfigError(
            f"{config.source}: pipeline_name {name!r} is not served by pxserve "
            f"(available: {', '.join(available())})"
        )
    module = importlib.import_module(f"{__name__}.{name}")
    return module.PIPELINE(config)
