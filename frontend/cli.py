"""``pxserve --serve --pipeline NAME``: PaddleX's serving command line.

Flags keep PaddleX's names and defaults so existing scripts work. Every
startup problem (unknown pipeline, bad config, missing model, busy port,
unusable device) ends in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from pxserve import __version__
from pxserve.frontend.app import RouteConflictError, plan_routes
from pxserve.frontend.placement import SharedMemoryError, plan_workers
from pxserve.frontend.server import (
    ServeError,
    ServerOptions,
    bind_socket,
    plan_rings,
    prepare_models,
    serve,
)
from pxserve.frontend.supervisor import StartupError
from pxserve.shared.config import (
    ConfigError,
    ServerConfig,
    builtin_pipelines,
    load_server_config,
    parse_hpi_config,
    resolve_engine,
)
from pxserve.shared.devices import DeviceError, default_device, gpu_usable, parse_devices
from pxserve.shared.pipelines import Pipeline, get_pipeline

log = logging.getLogger("pxserve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pxserve",
        description="Serve a PaddleX pipeline over HTTP (PaddleX-compatible API).",
    )
    parser.add_argument("--serve", action="store_true", help="start the HTTP server")
    parser.add_argument(
        "--install",
        nargs="*",
        metavar="PLUGIN",
        help="accepted for PaddleX compatibility (`--install serving`); pxserve needs no plugin",
    )
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="build the pipeline's embedded models and ONNX conversions into the cache, then exit"
        " (for container images and init steps; no port, no workers)",
    )
    parser.add_argument(
        "--pipeline",
        action="append",
        help="pipeline name (e.g. image_classification) or a YAML path; repeat it to serve several "
        "behind one port, or give a serving config that lists them (with --prepare: 'all' for every "
        "pipeline pxserve ships)",
    )
    parser.add_argument("--device", help="cpu, gpu, gpu:N or gpu:N,M (default: gpu if usable, else cpu)")
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    parser.add_argument(
        "--port",
        type=int,
        default=os.environ.get("PXSERVE_PORT", "8080"),
        help="port (default $PXSERVE_PORT, else 8080)",
    )
    parser.add_argument(
        "--engine",
        help="PaddleX 3.7's inference engine: paddle_static (Paddle Inference), hpi or onnxruntime "
        "(ONNX Runtime, as --use_hpip); default: the pipeline YAML's engine key, else --use_hpip",
    )
    parser.add_argument("--use_hpip", action="store_true", help="use the high-performance backend")
    parser.add_argument("--hpi_config", help="high-performance inference settings, a Python dict literal")
    parser.add_argument(
        "--data-dir",
        "--data_dir",
        dest="data_dir",
        help="where jobs and handed-out files are kept (default: Serving.data_dir, else $PXSERVE_DATA_DIR, "
        "else ~/.local/share/pxserve)",
    )
    parser.add_argument(
        "--job-store",
        "--job_store",
        dest="job_store",
        default=os.environ.get("PXSERVE_JOB_STORE"),
        help="job state for a fleet: a postgresql:// URL (default $PXSERVE_JOB_STORE, else SQLite in the "
        "data directory)",
    )
    parser.add_argument(
        "--job-model-alias",
        "--job_model_alias",
        dest="job_model_aliases",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="read jobs sent for model NAME with MODEL, e.g. PaddleOCR-VL-1.6=PP-StructureV3 (repeatable)",
    )
    parser.add_argument("--serial_number", help="accepted for PaddleX compatibility; not needed")
    parser.add_argument("--update_license", action="store_true", help="accepted; not needed")
    parser.add_argument(
        "--log-level",
        "--log_level",
        dest="log_level",
        default=os.environ.get("PXSERVE_LOG_LEVEL", "INFO"),
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default INFO)",
    )
    parser.add_argument("--version", action="version", version=f"pxserve {__version__}")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.install is not None:
        plugins = " ".join(args.install) or "serving"
        print(f"pxserve: nothing to install for {plugins}: serving is built in", file=sys.stderr)
        return 0
    if args.prepare:
        return prepare(args)
    if not args.serve:
        raise ConfigError("pxserve only serves: pass --serve --pipeline NAME")
    if not args.pipeline:
        raise ConfigError("--pipeline is required (a name such as image_classification, or a YAML path)")
    if args.serial_number or args.update_license:
        log.info("pxserve needs no licence: --serial_number/--update_license are accepted and ignored")
    hpi = parse_hpi_config(args.hpi_config)
    if not 0 <= args.port < 65536:  # 0: any free port (the log says which)
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")

    config = with_job_flags(load_server_config(args.pipeline), args)
    engine = resolve_engine(args.engine, args.use_hpip, hpi, config.pipelines)
    pipelines = load_pipelines(config)
    onnx = engine != "paddle"
    device_spec = args.device or default_device(onnx)
    devices = parse_devices(device_spec)
    if any(d.kind == "gpu" for d in devices) and not gpu_usable(onnx):
        package = "onnxruntime-gpu" if onnx else "paddlepaddle-gpu"
        raise DeviceError(
            f"--device {device_spec}: no usable GPU (needs an NVIDIA driver and {package}); use --device cpu"
        )
    plan = plan_workers(devices, config.engine, cpu_threads=hpi.cpu_threads if engine != "paddle" else None)

    rings = plan_rings(plan, config.engine)
    sock = bind_socket(args.host, args.port)
    log.info("Started server process [%d]", os.getpid())
    try:
        log.info("pipelines: %s; engine: %s", ", ".join(config.names), engine)
        cpu_only = all(d.kind == "cpu" for d in devices)
        models = [spec for pipeline in pipelines for spec in prepare_models(pipeline, engine, cpu_only)]
        options = ServerOptions(args.host, args.port, args.log_level)
        asyncio.run(serve(pipelines, config, models, plan, rings, sock, options))
    finally:
        sock.close()
    return 0


def with_job_flags(config: ServerConfig, args: argparse.Namespace) -> ServerConfig:
    """The command line's data directory, job store and model aliases over the config's."""
    jobs = config.engine.jobs
    aliases = dict(jobs.model_aliases)
    for item in args.job_model_aliases:
        name, _, model = item.partition("=")
        if not name.strip() or not model.strip():
            raise ConfigError(
                f"--job-model-alias takes NAME=MODEL (e.g. PaddleOCR-VL-1.6=PP-StructureV3), got {item!r}"
            )
        aliases[name.strip()] = model.strip()
    jobs = jobs.model_copy(update={"model_aliases": aliases, "store": args.job_store or jobs.store})
    update: dict[str, object] = {"jobs": jobs}
    if args.data_dir:
        update["data_dir"] = args.data_dir
    return config.model_copy(update={"engine": config.engine.model_copy(update=update)})


def load_pipelines(config: ServerConfig) -> list[Pipeline]:
    """The served pipelines, checked: settings each can serve, and no route served twice."""
    pipelines = [get_pipeline(p) for p in config.pipelines]
    for pipeline in pipelines:
        pipeline.check_all()
    try:
        plan_routes(pipelines)
    except RouteConflictError as exc:
        raise ConfigError(str(exc)) from None
    return pipelines


def prepare(args: argparse.Namespace) -> int:
    """Do the slow first-start steps now, so a read-only image starts at once."""
    if not args.pipeline:
        raise ConfigError(
            "--prepare needs --pipeline (a name such as image_classification, a YAML path, or all)"
        )
    hpi = parse_hpi_config(args.hpi_config)  # a bad --hpi_config fails here as it would at --serve
    # "all": every shipped config on its own (three of them, OCR and OCR_PP-OCRv4/v5, share a
    # route, so they are never served together, but an image holds both's models).
    groups = [[name] for name in builtin_pipelines()] if args.pipeline == ["all"] else [args.pipeline]
    for names in groups:
        config = load_server_config(names)
        engine = resolve_engine(args.engine, args.use_hpip, hpi, config.pipelines)
        for pipeline in load_pipelines(config):
            prepare_models(pipeline, engine)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        return run(args)
    except (ConfigError, DeviceError, ServeError, StartupError, SharedMemoryError) as exc:
        print(f"pxserve: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError | DeviceError) else 1
    except KeyboardInterrupt:
        return 130
