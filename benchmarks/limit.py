"""The limit, stated: each pipeline's server against the compute its models need for a page.

    python benchmarks/limit.py                          # every pipeline, both engines: ~25 minutes
    python benchmarks/limit.py --pipelines seal_recognition --engines onnxruntime --seconds 20

Per pipeline and engine, in one run:

* **The limit**: one process per core, each running the pipeline's runner on
  one thread over the same page in a loop, in-process: no HTTP, no rings, a
  fan-out's children run in place (``complete``). Their pages per second is
  the most the machine can do with these models; ``cores / limit`` is the
  page's compute (core-seconds), and ``compute / cores`` the best a lone page
  could take if it were spread perfectly over every core.
* **The server** (default settings: on 2 cores, two workers of one thread),
  the same page as a client sends it: p50 at concurrency 1 and pages per
  second at concurrency 4, closed loop; each worker's peak RSS (VmHWM).
* The fractions: throughput at c=4 over the limit (target >= 0.9), and the
  c=1 p50 over ``compute / cores`` (target <= 1.1).

The task the runner is given is what the server's front makes of the same
request (the pipeline's own ``parse``), so both do the same work. Pages: OCR
the A4 page photo of benchmarks/ocr.py; tables the SI-units page of
tests/tables.py; seals tests/data/seals/seal_contract.png; PP-StructureV3 the
first page photo of tests/structure_docs.py's articles; classification the
12-MP photo of benchmarks/run.py. Results: benchmarks/results/limit.json and
a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import loadgen  # noqa: E402
from ocr_versions import peak_rss_mib  # noqa: E402
from run import machine, phone_photo, start, stop  # noqa: E402

WORK = HERE / ".cache" / "limit"


def _file(data: bytes) -> dict[str, Any]:
    return {"file": base64.b64encode(data).decode(), "fileType": 1, "visualize": False}


def ocr_page() -> dict[str, Any]:
    from ocr import document_page

    return _file(document_page(WORK / "a4-150dpi.jpg").read_bytes())


def table_page() -> dict[str, Any]:
    import tables

    return _file(tables.png(tables.table_page(tables.UNITS)))


def seal() -> dict[str, Any]:
    return _file((ROOT / "tests" / "data" / "seals" / "seal_contract.png").read_bytes())


def structure_page() -> dict[str, Any]:
    from structure import page_photos

    return _file(page_photos()[0])


def photo() -> dict[str, Any]:
    data = phone_photo(WORK / "phone-12mp.jpg").read_bytes()
    return {"image": base64.b64encode(data).decode(), "visualize": False}


PIPELINES = {  # config name -> (route, request body)
    "OCR": ("/ocr", ocr_page),
    "table_recognition": ("/table-recognition", table_page),
    "seal_recognition": ("/seal-recognition", seal),
    "PP-StructureV3": ("/layout-parsing", structure_page),
    "image_classification": ("/image-classification", photo),
}


# -- the in-process limit ---------------------------------------------------------------------
def complete(runner: Any, task: Any) -> Any:
    """A task run to its end in this process: fan-outs' children, then their continuation."""
    from pxserve.shared.messages import FAN_OUT, FanOut, Task

    outcome = runner.run([task])[0]
    if outcome.status != FAN_OUT:
        return outcome
    plan = FanOut.decode(outcome.body)
    results = [complete(runner, child.child_of(task)).body for child in plan.children]
    then = plan.then.child_of(task).with_children(results)
    return complete(runner, Task.parse(b"".join(then.frame())))  # as the ring carries it


def in_process_runner(pipeline_name: str, engine: str) -> tuple[Any, Any]:
    """The pipeline and its runner, every model on one CPU thread, as a worker builds them."""
    from pxserve.frontend.server import prepare_models
    from pxserve.shared.config import load_pipeline_config
    from pxserve.shared.devices import Device
    from pxserve.shared.model_dir import ModelDir
    from pxserve.shared.pipelines import LoadedModel, RunnerContext, get_pipeline
    from pxserve.workers.backends import BackendOptions, create_backend
    from pxserve.workers.composed_runner import build_runner

    pipeline = get_pipeline(load_pipeline_config(pipeline_name))
    models, loaded = {}, {}
    for spec in prepare_models(pipeline, engine):
        if spec.identity not in loaded:
            model = ModelDir.load(spec.model_dir)
            backend = create_backend(model, BackendOptions(Device("cpu"), 1, spec.engine, spec.onnx_path))
            loaded[spec.identity] = LoadedModel(model, backend, Device("cpu"))
        models[spec.key] = loaded[spec.identity]
    return pipeline, build_runner(pipeline, models, RunnerContext())


def task_of(pipeline: Any, body: dict[str, Any]) -> Any:
    """The task the server's front makes of this request body."""
    from pxserve.shared.config import ServingSettings
    from pxserve.shared.image_input import ImageLoader

    request = pipeline.request_model.model_validate(body)
    task = asyncio.run(pipeline.parse(request, ImageLoader(ServingSettings())))
    return task.in_pipeline(pipeline.name)


def _limit_process(
    pipeline_name: str, engine: str, bodies: list[dict], seconds: float, barrier, results
) -> None:
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    pipeline, runner = in_process_runner(pipeline_name, engine)
    tasks = [task_of(pipeline, body) for body in bodies]
    for task in tasks:
        assert complete(runner, task).ok  # warm every shape
    barrier.wait()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        assert complete(runner, tasks[done % len(tasks)]).ok
        done += 1
    results.put((done, time.perf_counter() - started))


def in_process_limit(
    pipeline_name: str, engine: str, bodies: list[dict], seconds: float, processes: int | None = None
) -> float:
    """Pages per second of one single-thread process per core, each reading ``bodies`` in a loop."""
    processes = processes or len(os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    args = (pipeline_name, engine, bodies, seconds, barrier, results)
    workers = [context.Process(target=_limit_process, args=args) for _ in range(processes)]
    for worker in workers:
        worker.start()
    counted = [results.get(timeout=seconds + 900) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(done / elapsed for done, elapsed in counted)


# -- the server ---------------------------------------------------------------------------------
def serve_and_measure(pipeline_name: str, engine: str, route: str, body: bytes, seconds: float) -> dict:
    command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", pipeline_name]
    command += ["--host", "127.0.0.1", "--device", "cpu"] + (
        ["--use_hpip"] if engine == "onnxruntime" else []
    )
    process, url = start(command, {"PXSERVE_LOG_LEVEL": "WARNING"}, WORK / f"{pipeline_name}-{engine}.log")
    try:
        for _ in range(2):  # warm
            requests.post(url + route, data=body, timeout=600,
                          headers={"Content-Type": "application/json"}).raise_for_status()  # fmt: skip
        c1 = asyncio.run(loadgen.closed_loop(url, body, 1, seconds, 0, route=route))
        c4 = asyncio.run(loadgen.closed_loop(url, body, 4, seconds, 0, route=route))
        if c1.errors or c4.errors:
            raise RuntimeError(f"{pipeline_name} on {engine}: {c1.errors + c4.errors} errors")
        return {"c1_p50_s": round(c1.p50_ms / 1e3, 3), "c4_pages_per_s": round(c4.rps, 3),
                "peak_worker_mib": round(max(peak_rss_mib(process.pid), default=0))}  # fmt: skip
    finally:
        stop(process)


def measure(pipeline_name: str, engine: str, seconds: float) -> dict:
    route, make_body = PIPELINES[pipeline_name]
    body = make_body()
    cores = len(os.sched_getaffinity(0))
    limit = in_process_limit(pipeline_name, engine, [body], seconds)
    compute = cores / limit  # core-seconds a page needs
    server = serve_and_measure(pipeline_name, engine, route, json.dumps(body).encode(), seconds)
    row = {
        "pipeline": pipeline_name, "engine": engine, "cores": cores,
        "limit_pages_per_s": round(limit, 3), "page_compute_core_s": round(compute, 3),
        "best_c1_s": round(compute / cores, 3), **server,
        "c4_fraction_of_limit": round(server["c4_pages_per_s"] / limit, 2),
        "c1_over_best": round(server["c1_p50_s"] / (compute / cores), 2),
    }  # fmt: skip
    print(f"  {pipeline_name} {engine}: {row}", file=sys.stderr, flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| pipeline | engine | limit pages/s | page compute | c=4 pages/s (fraction of limit) "
        "| c=1 p50 (over compute / cores) | peak worker RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pipeline']} | {r['engine']} | {r['limit_pages_per_s']} "
            f"| {r['page_compute_core_s']} core-s | {r['c4_pages_per_s']} ({r['c4_fraction_of_limit']}) "
            f"| {r['c1_p50_s']} s ({r['c1_over_best']}) | {r['peak_worker_mib']} MiB |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipelines", nargs="+", choices=list(PIPELINES), default=list(PIPELINES))
    engines = ["paddle", "onnxruntime"]
    parser.add_argument("--engines", nargs="+", choices=engines, default=engines)
    parser.add_argument("--seconds", type=float, default=30.0, help="each window, and the limit's run")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = [measure(p, e, args.seconds) for p in args.pipelines for e in args.engines]
    report = {"machine": machine(), "seconds": args.seconds, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "limit.json").write_text(json.dumps(report, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
