"""Pipeline configuration: PaddleX 3.x YAML plus pxserve's ``Serving`` section.

A pipeline is named (a file under ``pxserve/configs``) or given as a path.
Both PaddleX forms are read: 3.x (``pipeline_name`` + ``SubModules``, and
``SubPipelines`` for pipelines built from pipelines, inline or by
``pipeline_config_path``) and the older 3.0-beta form
(``Global.pipeline_name`` + ``Pipeline``). The engine's settings live in the
same file under ``Serving`` so one file describes one deployment.

Several pipelines behind one port (:class:`ServerConfig`): ``--pipeline``
repeated, or a serving config that lists them (``pipelines:`` plus its own
``Serving``). Settings that shape the engine (workers, batching, memory,
rings, keys: :data:`ENGINE_KEYS`) are one per server: the serving config's,
or the first pipeline's; the rest (limits, timeouts, visualize) stay each
pipeline's own. Validation is pydantic's, so a typo gets a message with its path.
"""

from __future__ import annotations

import ast
import logging
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
)

log = logging.getLogger("pxserve")

Auto = Literal["auto"]
MiB = 1024 * 1024


class ConfigError(Exception):
    """A configuration problem, with a message meant for the user."""


class UrlInputSettings(BaseModel):
    """Fetching ``image`` from an http(s) URL: off unless enabled."""

    # Attribute docstrings are the fields' descriptions: the manual's table of keys is made from them.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = False
    """Fetch an input given as an http(s) URL instead of Base64; off: such a request is a 422 that says so."""
    allow_hosts: list[str] = Field(default_factory=list)
    """Host names allowed (`.example.com` allows its subdomains too); empty: any public host."""
    allow_private_networks: bool = False
    """Allow loopback, private, link-local and reserved addresses (trusted internal networks only);
    cloud metadata addresses are refused always."""
    max_mb: PositiveFloat = 16.0
    """The largest file fetched."""
    timeout_s: PositiveFloat = 10.0
    """The whole fetch, redirects included."""
    max_redirects: int = Field(default=3, ge=0, le=10)
    """Redirects followed; each hop is checked against the allow-list and the address rules."""


class JobSettings(BaseModel):
    """PaddleOCR's job API at `/api/v2/ocr/jobs` (frontend/jobs/): submit a file, poll, fetch the result."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Serve the job API beside the pipelines' routes (for the pipelines a job model needs)."""
    store: str | None = None
    """Where job state lives: a `postgresql://` URL, shared by a fleet of servers; default (or
    `$PXSERVE_JOB_STORE` unset): SQLite in `<data_dir>/jobs/jobs.sqlite3`, this server alone."""
    results_dir: str | None = None
    """Uploads, pages read and result files; default `<data_dir>/jobs`. A fleet shares one (a volume)."""
    model_aliases: dict[str, str] = Field(default_factory=dict)
    """Job model names read as another, e.g. `PaddleOCR-VL-1.6: PP-StructureV3` for clients that can
    only send a vision-language model's name (`--job-model-alias`)."""
    running_per_server: PositiveInt = 2
    """Jobs one server reads at once; more wait `pending`. Direct requests always go first."""
    lease_s: PositiveFloat = 30.0
    """A server renews its hold on a running job this often (a third of it); a job whose server stopped
    renewing (killed) is taken over by any server after this long, from its last page read."""
    retention_hours: PositiveFloat = 24.0
    """A finished job, its result and pictures are kept this long, then deleted."""
    max_storage_mb: PositiveFloat = 10240.0
    """Disk the jobs' files may take; a submit beyond it gets 503 with `Retry-After`."""
    max_pending: PositiveInt = 1000
    """Jobs waiting to run; a submit beyond it gets 429 with `Retry-After`."""
    trust_forwarded: bool = False
    """Behind a proxy: build result URLs from `X-Forwarded-Proto`/`X-Forwarded-Host` (else from `Host`,
    or `public_url` when set)."""


class ServingSettings(BaseModel):
    """Engine settings; every one has a default that suits the machine."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    # PaddleX's own keys
    visualize: bool = True
    """Return pictures of the results (PaddleX's default); turn off to save bandwidth and worker time."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """PaddleX's `Serving.extra`; its `max_num_input_imgs` is read as `max_pdf_pages`."""
    # Workers
    instances_per_device: PositiveInt | Auto = "auto"
    """Workers per device. auto: one per usable core on CPU (at most 8), one per GPU.
    Each worker holds a copy of every served model."""
    cpu_threads: PositiveInt | Auto = "auto"
    """Intra-op threads of each CPU worker. auto: cores / workers; keep workers x threads <= cores."""
    # Dynamic batching
    max_batch_size: PositiveInt = 8
    """Waiting requests merged into one inference call."""
    max_queue_delay_ms: NonNegativeFloat | Auto = "auto"
    """How long a worker waits to fill a batch (auto: 0 on CPU, 2 on GPU); 0 still merges whatever is
    already waiting. Raise it on a GPU for throughput, keep it 0 on CPU for latency."""
    # Admission and request limits. Images are checked from their header, before decoding.
    queue_capacity: PositiveInt = 256
    """Admitted, unanswered requests (counted from before the body is read); beyond it, 503 at once
    with `Retry-After`."""
    max_body_mb: PositiveFloat = 16.0
    """The request body limit: larger bodies get 413."""
    request_timeout_s: PositiveFloat = 60.0
    """Per-request deadline (per page for a streamed document): a body not received by then gets 408,
    a result not ready 504."""
    max_pixels: PositiveInt = 64_000_000
    """The largest image, in pixels, read from its header before anything is decoded: 413."""
    max_side: PositiveInt = 16_384
    """The longest side of an image, in pixels: 413."""
    max_aspect_ratio: PositiveFloat = 20.0
    """The most elongated image accepted: 422."""
    max_pdf_pages: PositiveInt = 10
    """PDF pages read per request (PaddleX's `Serving.extra.max_num_input_imgs` is honoured too); later
    pages are dropped, as PaddleX does, and the answer's `X-Pxserve-Pages-Dropped` header says how many."""
    max_stream_pages: PositiveInt = 1000
    """PDF pages read per streamed request (`Accept: application/x-ndjson`) or whole document
    (`text/markdown`, `application/zip`); the front holds only a few finished pages at a time."""
    image_formats: list[str] = Field(default_factory=lambda: ["JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF"])
    """Image formats accepted (GIF: its first frame); others get 422."""
    url_inputs: UrlInputSettings = Field(default_factory=UrlInputSettings)
    """Inputs given as URLs: off unless enabled (the `url_inputs.*` keys)."""
    unserved_switches: Literal["refuse", "turn_off"] = "refuse"
    """A request switch that needs a model this server lacks (PP-StructureV3's `useChartRecognition`,
    `useFormulaRecognition`...): `refuse` answers 422 naming the model; `turn_off` serves the request
    with the switch off and says so in each page's `prunedResult.warnings` (for clients that always
    send such switches, e.g. paddleocr-mcp's `useChartRecognition: true`)."""
    # Files handed out by URL (frontend/file_store.py)
    return_urls: bool = False
    """PaddleX 3.7's: answer pictures and exported files as URLs this server serves (`GET /files/...`,
    unguessable, expiring) instead of Base64. PaddleX's `extra.return_img_urls` is honoured too."""
    data_dir: str | None = None
    """Where the server keeps files that outlive an answer; default `$PXSERVE_DATA_DIR`, else
    `~/.local/share/pxserve`."""
    public_url: str | None = None
    """The scheme and host clients reach this server at, for the URLs it hands out (behind a proxy);
    default: the request's own Host."""
    jobs: JobSettings = Field(default_factory=JobSettings)
    """PaddleOCR's job API (the `jobs.*` keys)."""
    file_ttl_hours: PositiveFloat = 24.0
    """How long a URL handed out keeps working."""
    max_file_storage_mb: PositiveFloat = 2048.0
    """Disk the handed-out files may take; beyond it the oldest answers' files are deleted first."""
    # Workers' health and memory
    worker_stall_timeout_s: PositiveFloat = 30.0
    """A worker that neither beats its heartbeat nor uses any CPU for this long (deadlocked, stopped) is
    killed and replaced, its requests retried once. A busy one is left alone unless one step runs longer
    than `request_timeout_s` plus this, when no client can still want it."""
    max_worker_memory_mb: NonNegativeFloat | Auto = "auto"
    """A worker whose resident memory passes this is recycled: its successor is started first, then it
    finishes what it holds and exits; no request is lost. auto: 3/4 of the machine's (or container's)
    memory over the worker count; 0: never."""
    max_kept_mb: NonNegativeFloat | Auto = "auto"
    """What a worker may keep between batches, for the next pages, above what it holds at rest (its
    models): the last page shape's activations, the engines' pools, the heap's free pages. A batch that
    leaves it holding more gives them back at once; below it they go back once the worker has waited
    0.5 s for work. auto: 1536 MiB; 0: back after every batch (the least memory, pages of one size a
    little slower). Said at startup."""
    max_result_mb: PositiveFloat = 256.0
    """The largest answer one request may produce (a long PDF with `visualize`); larger: 413. Anything up
    to it comes back whole, in pieces through the response ring if need be."""
    # Keys
    api_keys: list[str] = Field(default_factory=list)
    """API keys clients send as `Authorization: Bearer <key>`; `PXSERVE_API_KEYS` (comma-separated) adds
    more. None: no authentication."""
    auth_health: bool = False
    """Whether `/health` needs a key (open by default, for load balancers)."""
    auth_metrics: bool = True
    """Whether `/metrics` needs a key."""
    # Shared memory per worker, in /dev/shm
    request_ring_mb: PositiveFloat = 48.0
    """Shared memory per worker for requests, in /dev/shm (shrunk to fit at startup, with a warning)."""
    response_ring_mb: PositiveFloat = 16.0
    """Shared memory per worker for answers, in /dev/shm."""

    @property
    def urls_for_files(self) -> bool:
        """``return_urls``, or PaddleX's older ``extra.return_img_urls``."""
        return self.return_urls or bool(self.extra.get("return_img_urls"))

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MiB)

    @property
    def max_result_bytes(self) -> int:
        return int(self.max_result_mb * MiB)


class HpiConfig(BaseModel):
    """``--hpi_config``, in PaddleX's shape: a backend and its settings."""

    model_config = ConfigDict(extra="ignore")  # PaddleX has keys we have no use for

    backend: Literal["onnxruntime", "tensorrt", "paddle"] = "onnxruntime"
    backend_config: dict[str, Any] = Field(default_factory=dict)

    @property
    def cpu_threads(self) -> int | None:
        value = self.backend_config.get("cpu_num_threads")
        return int(value) if value else None


# PaddleX 3.7's inference engines (``--engine``, or a pipeline YAML's ``engine`` key), by what
# pxserve runs for each: Paddle Inference, or the high-performance backend (--hpi_config's).
ENGINES_SERVED = {"paddle_static": "paddle", "hpi": "hpi", "onnxruntime": "onnxruntime"}
ENGINES_NOT_SERVED = {
    "paddle_dynamic": "Paddle's dynamic-graph (training) models",
    "transformers": "Hugging Face transformers models",
    "genai_client": "a vision-language model server",
    "flexible": "PaddleX's per-model engine choice",
}


def resolve_engine(flag: str | None, use_hpip: bool, hpi: HpiConfig, pipelines: list[PipelineConfig]) -> str:
    """The backend every model runs on: ``--engine``, else the pipelines' ``engine`` key, else
    ``--use_hpip`` (the backend --hpi_config names) or Paddle. A name PaddleX has and pxserve
    does not serve is one line naming those it does."""
    named = {str(key) for p in pipelines if (key := (p.model_extra or {}).get("engine"))}
    if flag is None and len(named) > 1:
        raise ConfigError(f"the pipelines name different engines ({', '.join(sorted(named))}): pass --engine")
    choice, source = (flag, "--engine") if flag else (next(iter(named), None), "engine")
    if choice is None:
        return hpi.backend if use_hpip else "paddle"
    if choice in ENGINES_NOT_SERVED:
        raise ConfigError(
            f"{source} {choice}: {ENGINES_NOT_SERVED[choice]} are not served by pxserve; "
            f"it serves {', '.join(ENGINES_SERVED)} (paddle_static: Paddle Inference; hpi, onnxruntime: "
            "ONNX Runtime, as --use_hpip)"
        )
    if choice not in ENGINES_SERVED:
        raise ConfigError(f"{source} must be one of {', '.join([*ENGINES_SERVED, *ENGINES_NOT_SERVED])}")
    engine = ENGINES_SERVED[choice]
    if engine == "paddle" and use_hpip:
        raise ConfigError(f"{source} {choice} runs Paddle Inference, but --use_hpip asks for ONNX Runtime")
    if engine == "hpi":
        return hpi.backend if hpi.backend != "paddle" else "onnxruntime"
    return engine


def parse_hpi_config(text: str | None) -> HpiConfig:
    """Parse a Python dict literal, as PaddleX's ``--hpi_config`` takes."""
    if not text:
        return HpiConfig()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"--hpi_config must be a Python dict literal, got {text!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--hpi_config must be a dict, got {type(value).__name__}")
    try:
        return HpiConfig.model_validate(value)
    except ValidationError as exc:
        raise ConfigError(f"--hpi_config: {describe_validation_error(exc)}") from None


class ModelSettings(BaseModel):
    """One entry of ``SubModules`` (unknown keys are kept for the pipeline)."""

    model_config = ConfigDict(extra="allow")

    module_name: str | None = None
    model_name: str | None = None
    model_dir: str | None = None
    batch_size: PositiveInt | None = None
    topk: PositiveInt | None = None


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    pipeline_name: str
    SubModules: dict[str, ModelSettings] = Field(default_factory=dict)
    # Pipelines this one is built from, by PaddleX's names (GeneralOCR, ...).
    SubPipelines: dict[str, PipelineConfig] = Field(default_factory=dict)
    Serving: ServingSettings = Field(default_factory=ServingSettings)
    source: str = ""

    def sub_module(self, key: str) -> ModelSettings:
        if key in self.SubModules:
            return self.SubModules[key]
        if len(self.SubModules) == 1:
            return next(iter(self.SubModules.values()))
        raise ConfigError(f"{self.source}: SubModules has no {key!r} entry")


# PaddleX pipelines built on a vision-language model: named so that asking for one says why not.
VISION_LANGUAGE_PIPELINES = ("PaddleOCR-VL", "PaddleOCR-VL-1.5", "PaddleOCR-VL-1.6")


def builtin_pipelines() -> list[str]:
    """Names of the pipeline configs shipped with pxserve."""
    folder = resources.files("pxserve.configs")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(name_or_path: str) -> tuple[dict[str, Any], str]:
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read pipeline config {path}: {exc.strerror}") from None
        source = str(path)
    else:
        builtin = resources.files("pxserve.configs") / f"{name_or_path}.yaml"
        if name_or_path in VISION_LANGUAGE_PIPELINES:
            raise ConfigError(
                f"{name_or_path} needs a vision-language model (PaddleOCR-VL, 0.9B parameters) that pxserve "
                "does not run; for documents to Markdown serve PP-StructureV3 (--pipeline PP-StructureV3)"
            )
        if not builtin.is_file():
            known = ", ".join(builtin_pipelines())
            raise ConfigError(f"unknown pipeline {name_or_path!r}: not a file and not one of: {known}")
        text = builtin.read_text(encoding="utf-8")
        source = f"<builtin {name_or_path}>"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a YAML mapping")
    return data, source


def _from_beta_form(data: dict[str, Any]) -> dict[str, Any]:
    """Turn PaddleX 3.0-beta ``Global``/``Pipeline`` sections into 3.x form."""
    data = dict(data)
    global_section = data.pop("Global", None) or {}
    pipeline_section = dict(data.pop("Pipeline", None) or {})
    data.setdefault("pipeline_name", global_section.get("pipeline_name"))
    model = pipeline_section.pop("model", None)
    if model is not None:
        key = "model_dir" if Path(str(model)).expanduser().is_dir() else "model_name"
        pipeline_section[key] = model
    data.setdefault("SubModules", {"Pipeline": pipeline_section})
    return data


def _with_sub_pipelines(data: dict[str, Any], source: str, base: Path | None) -> dict[str, Any]:
    """Read each ``SubPipelines`` entry given by ``pipeline_config_path`` (as PaddleX does), recursively."""
    subs = data.get("SubPipelines")
    if not subs:
        return data
    if not isinstance(subs, dict):
        raise ConfigError(f"{source}: SubPipelines must be a mapping of names to pipeline configs")
    resolved: dict[str, Any] = {}
    for name, sub in subs.items():
        if not isinstance(sub, dict):
            raise ConfigError(f"{source}: SubPipelines.{name} must be a mapping")
        path = sub.get("pipeline_config_path")
        if path:
            if base is not None and not Path(path).is_absolute() and (base / path).exists():
                path = str(base / path)
            sub_data, sub_source = _read_yaml(str(path))
            sub_data = {**sub_data, **{k: v for k, v in sub.items() if k != "pipeline_config_path"}}
        else:
            sub_data, sub_source = sub, f"{source} SubPipelines.{name}"
        sub_base = Path(sub_source).parent if Path(sub_source).is_file() else base
        resolved[name] = {**_with_sub_pipelines(sub_data, sub_source, sub_base), "source": sub_source}
    return {**data, "SubPipelines": resolved}


def load_pipeline_config(name_or_path: str) -> PipelineConfig:
    data, source = _read_yaml(name_or_path)
    if "pipeline_name" not in data and "Global" in data:
        data = _from_beta_form(data)
    if "pipelines" in data and "pipeline_name" not in data:
        raise ConfigError(f"{source} is a serving config (it lists pipelines): pass it as --pipeline alone")
    base = Path(source).parent if Path(source).is_file() else None
    data = _with_sub_pipelines(data, source, base)
    try:
        config = PipelineConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None
    return config


# Serving keys that shape the engine, one value per server (see the module docstring).
ENGINE_KEYS = (
    "instances_per_device", "cpu_threads", "max_batch_size", "max_queue_delay_ms",
    "worker_stall_timeout_s", "max_worker_memory_mb", "max_kept_mb", "max_result_mb", "api_keys",
    "auth_health", "auth_metrics", "request_ring_mb", "response_ring_mb",
    "data_dir", "public_url", "file_ttl_hours", "max_file_storage_mb", "jobs",
)  # fmt: skip


class ServerConfig(BaseModel):
    """What one server serves: its pipelines, in order, and the engine's settings."""

    pipelines: list[PipelineConfig]
    # The engine-wide values of ENGINE_KEYS; the size limits it must fit
    # (bodies, pixels, deadlines) are the largest any pipeline allows.
    engine: ServingSettings
    source: str = ""

    @property
    def names(self) -> list[str]:
        return [p.pipeline_name for p in self.pipelines]


def load_server_config(names_or_paths: list[str]) -> ServerConfig:
    """``--pipeline`` given once or more: pipeline configs, or one serving config listing them."""
    if not names_or_paths:
        raise ConfigError("--pipeline is required (a name such as image_classification, or a YAML path)")
    engine_source: ServingSettings | None = None
    pipelines: list[PipelineConfig] = []
    for item in names_or_paths:
        data, source = _read_yaml(item)
        if "pipelines" not in data or "pipeline_name" in data:
            pipelines.append(load_pipeline_config(item))
            continue
        if len(names_or_paths) > 1:
            raise ConfigError(
                f"{source} is a serving config (it lists pipelines): pass it as --pipeline alone"
            )
        listed = data.get("pipelines")
        if not isinstance(listed, list) or not listed or not all(isinstance(x, str) for x in listed):
            raise ConfigError(f"{source}: pipelines must be a list of pipeline names or YAML paths")
        base = Path(source).parent
        pipelines = [load_pipeline_config(str(base / x) if (base / x).is_file() else x) for x in listed]
        try:
            engine_source = ServingSettings.model_validate(data.get("Serving") or {})
        except ValidationError as exc:
            raise ConfigError(f"{source}: Serving.{describe_validation_error(exc)}") from None
    base_serving = engine_source or pipelines[0].Serving
    if engine_source is None:
        _warn_engine_keys_ignored(pipelines)
    widest = {
        "max_body_mb": max(p.Serving.max_body_mb for p in pipelines),
        "max_pixels": max(p.Serving.max_pixels for p in pipelines),
        "request_timeout_s": max(p.Serving.request_timeout_s for p in pipelines),
    }
    engine = base_serving.model_copy(update=widest)
    return ServerConfig(pipelines=pipelines, engine=engine, source=", ".join(names_or_paths))


def _warn_engine_keys_ignored(pipelines: list[PipelineConfig]) -> None:
    first = pipelines[0]
    for other in pipelines[1:]:
        for key in ENGINE_KEYS:
            if key in other.Serving.model_fields_set and getattr(other.Serving, key) != getattr(
                first.Serving, key
            ):
                log.warning(
                    "%s sets Serving.%s, an engine-wide setting; the first pipeline's (%s) applies "
                    "to every pipeline (use a serving config to set it once)",
                    other.source, key, getattr(first.Serving, key),
                )  # fmt: skip


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: 'path.to.field: message'."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
