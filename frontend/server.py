"""Bringing a server up and down: model, socket, workers, HTTP, signals.

Order matters for the user: the port is claimed first (a busy port fails in
a second, not after loading models), then the model is found or built, then
HTTP starts answering (/health says 503 "not ready" and inference requests
get 503) while workers load it, and it serves once every worker is ready.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from pxserve.frontend.app import create_app
from pxserve.frontend.engine_client import EngineClient
from pxserve.frontend.metrics import Metrics
from pxserve.frontend.placement import (
    Placement,
    RingSizes,
    kept_memory_limit,
    size_rings,
    worker_memory_limit,
)
from pxserve.frontend.supervisor import Supervisor
from pxserve.shared.cache import onnx_model_path
from pxserve.shared.config import ConfigError, MiB, ServerConfig, ServingSettings
from pxserve.shared.model_dir import ModelDir
from pxserve.shared.pipelines import Pipeline
from pxserve.shared.ring import shm_dir
from pxserve.workers.worker import SETTLE_QUIET_S, ModelSpec

log = logging.getLogger("pxserve")

DRAIN_GRACE_S = 30.0


class ServeError(RuntimeError):
    """A startup failure to report in one line."""


@dataclass(frozen=True)
class ServerOptions:
    host: str
    port: int
    log_level: str


def bind_socket(host: str, port: int) -> socket.socket:
    """Claim the port before the slow steps, so a busy port fails at once;
    :func:`serve` starts listening on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def prepare_model(pipeline: Pipeline, key: str | None = None) -> ModelDir:
    """Find one of the pipeline's model directories (by its own SubModules key), building an
    embedded model on first use."""
    name, directory = pipeline.model_source(key)
    if directory is None:
        builder = importlib.import_module(pipeline.embedded_models[name])
        directory = builder.model_dir(name)
        if not builder.is_cached(name):
            log.info("building the embedded model %s into %s (first start only)", name, directory)
            command = [sys.executable, "-m", builder.__name__, str(directory), name]
            result = subprocess.run(command, check=False)
            if result.returncode != 0:
                raise ServeError(f"could not build the embedded model {name} (exit {result.returncode})")
    try:
        return ModelDir.load(Path(directory))
    except Exception as exc:
        raise ConfigError(f"model {name}: {exc}") from None


# Models that, on CPU, run on ONNX Runtime whatever the engine, as PaddleX's high-performance
# plugin keeps a preferred backend per model. Measured (benchmarks/readers.py, README "PP-OCRv4 or
# PP-OCRv5"): Paddle's oneDNN cannot run PP-OCRv5 mobile's detector (PIR), and runs its
# recognizer slower than ONNX Runtime (a page: 3.6 s with it on Paddle, 2.7 s on ONNX Runtime).
ONNX_RUNTIME_ON_CPU = frozenset({"PP-OCRv5_mobile_det", "PP-OCRv5_mobile_rec"})


def prepare_models(pipeline: Pipeline, engine: str, cpu_only: bool = True) -> list[ModelSpec]:
    """Every model the pipeline and its sub-pipelines need, with the engine that runs it
    (ONNX converted if needed). As PaddleX's high-performance plugin picks a backend per
    model, a model Paddle cannot run well here runs on ONNX Runtime, beside the Paddle ones:
    one that exists only as inference.onnx; on CPU, one named in ONNX_RUNTIME_ON_CPU; and,
    on CPU, a PIR program (inference.json) that Paddle's oneDNN turns out not to run (without
    oneDNN Paddle is 2-3x slower): its conversion is made here and the worker switches to it
    at the first such failure."""
    specs = []
    for key, owner, own_key in pipeline.all_models():
        model = prepare_model(owner, own_key)
        log.info("%s model %s: %s from %s", pipeline.name, key, model.model_name, model.path)
        runs_on = engine
        if model.program is None and engine == "paddle":
            log.info(
                "%s model %s: %s exists only as inference.onnx; it runs on ONNX Runtime",
                pipeline.name,
                key,
                model.model_name,
            )
            runs_on = "onnxruntime"
        if runs_on == "paddle" and cpu_only and model.model_name in ONNX_RUNTIME_ON_CPU:
            log.info(
                "%s model %s: %s runs faster on ONNX Runtime than on Paddle on CPU; it runs there",
                pipeline.name,
                key,
                model.model_name,
            )
            runs_on = "onnxruntime"
        onnx_path = prepare_onnx(model) if runs_on != "paddle" else None
        if runs_on == "paddle" and cpu_only and not model.is_legacy_program:
            onnx_path = _pir_fallback(pipeline.name, key, model)
        specs.append(ModelSpec(key, str(model.path), runs_on, onnx_path, pipeline.name))
    return specs


def _pir_fallback(pipeline: str, key: str, model: ModelDir) -> str | None:
    """A PIR program's ONNX conversion (made once, cached), for its worker to run it on ONNX
    Runtime should Paddle's oneDNN not run it, instead of on Paddle without oneDNN; None if
    it cannot be converted (then Paddle without oneDNN, as before)."""
    try:
        onnx_path = prepare_onnx(model)
    except ServeError as exc:
        log.info("%s model %s: %s; should oneDNN not run it, it runs without", pipeline, key, exc)
        return None
    log.info(
        "%s model %s: %s is a PIR program: should Paddle's oneDNN not run it on CPU, it runs on ONNX Runtime",
        pipeline,
        key,
        model.model_name,
    )
    return onnx_path


def prepare_onnx(model: ModelDir) -> str:
    """The model as ONNX for ``--use_hpip``: its own inference.onnx, the cache, or converted now."""
    if model.onnx is not None:
        log.info("serving %s's own inference.onnx as it is", model.model_name)
        return str(model.onnx)
    target = onnx_model_path(model)
    if target.is_file():
        log.info("using the cached ONNX conversion %s", target)
        return str(target)
    log.info("converting %s to ONNX with paddle2onnx (first start only)", model.model_name)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pxserve.workers.onnx_convert", str(model.path), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not target.is_file():
        raise ServeError(f"--use_hpip: cannot convert {model.model_name} to ONNX: {_reason(result)}")
    log.info("converted in %.1f s; cached at %s", time.monotonic() - started, target)
    return str(target)


def _reason(result: subprocess.CompletedProcess) -> str:
    """The most telling line of a failed conversion (paddle2onnx may abort in C++)."""
    lines = result.stderr.splitlines()
    ours = [ln.split(": ", 3)[-1] for ln in lines if ln.startswith("pxserve: onnx:")]
    native = [ln.split("] ")[-1] for ln in lines if "[ERROR]" in ln]
    for found in (ours, native):
        if found:
            return found[-1].strip()
    return f"paddle2onnx exited with code {result.returncode}"


def plan_rings(plan: list[Placement], serving: ServingSettings) -> RingSizes:
    """Ring sizes that fit this machine's /dev/shm (shrunk, with a warning, if needed)."""
    rings = size_rings(len(plan), serving, shutil.disk_usage(shm_dir()).free)
    asked = (serving.request_ring_mb, serving.response_ring_mb)
    got = (rings.request_bytes / MiB, rings.response_bytes / MiB)
    if got[0] < asked[0] or got[1] < asked[1]:
        log.warning(
            "shared memory is short: rings shrunk to %.0f + %.0f MiB per worker (asked %g + %g)", *got, *asked
        )
    return rings


async def serve(
    pipelines: list[Pipeline],
    config: ServerConfig,
    models: list[ModelSpec],
    plan: list[Placement],
    rings: RingSizes,
    sock: socket.socket,
    options: ServerOptions,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    memory_limit = worker_memory_limit(config.engine, len(plan))
    if memory_limit:
        log.info("workers over %.0f MiB are recycled (Serving.max_worker_memory_mb)", memory_limit / MiB)
    log.info(
        "workers give back what their last pages took once all have waited %.1f s for work, or at once "
        "past %.0f MiB above their size at rest (Serving.max_kept_mb)",
        SETTLE_QUIET_S,
        kept_memory_limit(config.engine) / MiB,
    )
    supervisor = Supervisor(config, models, plan, rings, options.log_level, memory_limit)
    engine = EngineClient(supervisor, config)
    telemetry = Metrics()
    telemetry.track_queue(lambda: engine.admitted_by)
    telemetry.track_workers(lambda: supervisor.ready_count)
    telemetry.track_worker_memory(lambda: {str(h.slot): h.rss for h in supervisor.workers.values() if h.rss})
    engine.on_drop = telemetry.tasks_dropped.inc
    supervisor.on_batch = telemetry.observe_batch
    supervisor.on_restart = telemetry.worker_restarts.inc
    supervisor.on_recycle = telemetry.worker_recycles.inc
    # handler_cancellation: a client that hangs up cancels its handler, and
    # with it the request's tasks (see engine_client.py).
    runner = web.AppRunner(
        create_app(pipelines, config.engine, engine, telemetry, DRAIN_GRACE_S),
        access_log=None,
        shutdown_timeout=DRAIN_GRACE_S,
        handler_cancellation=True,
    )
    try:
        # Listen at once: /health answers 503 "not ready" while workers load.
        await runner.setup()
        await web.SockSite(runner, sock).start()
        host, port = sock.getsockname()[:2]
        log.info("listening on http://%s:%d; not ready until the workers have loaded the models", host, port)
        for pipeline in pipelines:
            log.info("serving %s at POST %s", pipeline.name, pipeline.route)
        starting = asyncio.create_task(supervisor.start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            log.info("interrupted while starting")
            return
        stopped.cancel()
        starting.result()  # raises StartupError
        log.info("Application startup complete.")
        log.info("pxserve running on http://%s:%d (Press CTRL+C to quit)", host, port)
        await stop.wait()
        log.info("shutting down: draining %d in-flight request(s)", engine.admitted)
    finally:
        await runner.cleanup()  # stops accepting, waits for handlers in flight
        await supervisor.stop()
        log.info("stopped")
