"""The offline limit: the same pipeline, in-process, on the same cores, no HTTP.

Runs decode -> preprocess -> infer -> postprocess with pxserve's own runner
and backend, in as many processes with as many threads as the server would
start, feeding full batches. A server can approach this number, never pass
it. Also measures single-image latency (batch of one, one worker's threads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import multiprocess

from pxserve.frontend.placement import plan_workers
from pxserve.shared.config import load_pipeline_config
from pxserve.shared.devices import Device


@dataclass
class OfflineResult:
    engine: str
    processes: int
    threads: int
    batch: int
    images_per_s: float
    single_image_ms: float


def _runner(pipeline_name: str, model_dir: str, engine: str, onnx_path: str | None, threads: int):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from pxserve.shared.model_dir import ModelDir
    from pxserve.shared.pipelines import LoadedModel, RunnerContext, get_pipeline
    from pxserve.workers.backends import BackendOptions, create_backend
    from pxserve.workers.composed_runner import create_runner

    model = ModelDir.load(model_dir)
    backend = create_backend(model, BackendOptions(Device("cpu"), threads, engine, onnx_path))
    pipeline = get_pipeline(load_pipeline_config(pipeline_name))
    models = {pipeline.sub_module: LoadedModel(model, backend, Device("cpu"))}
    return create_runner(pipeline, models, RunnerContext())


def _worker(args: tuple, barrier, results) -> None:
    pipeline_name, model_dir, engine, onnx_path, threads, image, visualize, batch, duration = args
    from pxserve.shared.messages import Task

    runner = _runner(pipeline_name, model_dir, engine, onnx_path, threads)
    tasks = [Task(i, {"topk": 5, "visualize": visualize}, image) for i in range(batch)]
    runner.run(tasks)  # warm up
    barrier.wait()
    done, deadline = 0, time.monotonic() + duration
    while time.monotonic() < deadline:
        for outcome in runner.run(tasks):
            assert outcome.ok, outcome.message
        done += batch
    results.put(done)


def measure(
    pipeline_name: str, model_dir: str, image: bytes, engine: str = "paddle", onnx_path: str | None = None,
    visualize: bool = False, duration: float = 10.0,
) -> OfflineResult:  # fmt: skip
    config = load_pipeline_config(pipeline_name)
    plan = plan_workers([Device("cpu")], config.Serving)
    threads, batch = plan[0].cpu_threads, config.Serving.max_batch_size
    ctx = multiprocess.get_context("spawn")
    barrier, results = ctx.Barrier(len(plan) + 1), ctx.Queue()
    args = (pipeline_name, model_dir, engine, onnx_path, threads, image, visualize, batch, duration)
    processes = [ctx.Process(target=_worker, args=(args, barrier, results)) for _ in plan]
    for process in processes:
        process.start()
    barrier.wait()
    started = time.monotonic()
    total = sum(results.get(timeout=duration + 120) for _ in processes)
    elapsed = time.monotonic() - started
    for process in processes:
        process.join()

    from pxserve.shared.messages import Task

    runner = _runner(pipeline_name, model_dir, engine, onnx_path, threads)
    task = [Task(0, {"topk": 5, "visualize": visualize}, image)]
    runner.run(task)
    timings = []
    for _ in range(50):
        t = time.perf_counter()
        runner.run(task)
        timings.append((time.perf_counter() - t) * 1e3)
    return OfflineResult(engine, len(plan), threads, batch, total / elapsed, statistics.median(timings))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipeline", default="image_classification")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--engine", default="paddle", choices=["paddle", "onnxruntime"])
    parser.add_argument("--onnx-path")
    parser.add_argument("--visualize", action="store_true")
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    result = measure(
        args.pipeline, args.model_dir, args.image.read_bytes(), args.engine, args.onnx_path,
        args.visualize, args.duration,
    )  # fmt: skip
    print(json.dumps(asdict(result), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
