"""Benchmark pxserve against its offline limit and against PaddleX, in one run.

    python benchmarks/run.py                # about 10 minutes on 2 cores
    python benchmarks/run.py --quick        # shorter runs, for a smoke check

For each engine (Paddle Inference, and ONNX Runtime via --use_hpip) it
measures the offline limit (benchmarks/offline.py: the same pipeline
in-process on the same cores, no HTTP), then starts ``pxserve --serve`` and
drives it with benchmarks/loadgen.py: small JPEG and 12-MP phone photo,
visualize off and on, closed loop at several concurrencies and open loop at
a fixed rate. If PaddleX 3.4.3 is installed (benchmarks/paddlex_setup.sh) it
runs the same scenarios against ``paddlex --serve`` on the same model.
Results go to benchmarks/results/: results.json, throughput.png,
latency_cdf.png, and a Markdown table on stdout (and in table.md).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import requests
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
import offline  # noqa: E402

from pxserve.frontend.server import prepare_model, prepare_onnx  # noqa: E402
from pxserve.shared.config import load_pipeline_config  # noqa: E402
from pxserve.shared.pipelines import get_pipeline  # noqa: E402

PIPELINE = "image_classification"
SMALL = HERE.parent / "tests" / "data" / "chelsea.jpg"  # 451x300, ~38 KB


def phone_photo(target: Path) -> Path:
    """A 12-MP JPEG (4240x2828, sensor-like noise) made from a real photo."""
    if target.is_file():
        return target
    source = Image.open(HERE.parent / "tests" / "data" / "coffee.jpg").convert("RGB")
    big = source.resize((4240, 2828), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 6, (2828, 4240, 3))
    pixels = (np.asarray(big, dtype=np.float32) + noise).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=92)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())
    return target


def machine() -> dict:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), platform.processor(),
    )  # fmt: skip
    memory = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in ln)
    return {
        "cpu": cpu, "cores": len(os.sched_getaffinity(0)), "memory_gib": round(int(memory) / 2**20, 1),
        "python": platform.python_version(), "kernel": platform.release(),
    }  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, deadline_s: float = 300) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not become healthy")


def start(command: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("wb") as stream:
        process = subprocess.Popen([*command, "--port", str(port)], stdout=stream, stderr=subprocess.STDOUT,
                                   env={**os.environ, **env}, cwd=log.parent)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    return process, url


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def scenarios(images: dict[str, Path], args: argparse.Namespace) -> list[tuple[str, Path, bool, list[int]]]:
    return [
        ("small JPEG", images["small"], False, args.concurrency),
        ("12-MP photo", images["phone"], False, args.concurrency),
        ("small JPEG, visualize", images["small"], True, [1, max(args.concurrency)]),
    ]


def drive(url: str, images: dict[str, Path], args: argparse.Namespace, open_rate: float | None) -> list[dict]:
    runs = []
    for name, image, visualize, levels in scenarios(images, args):
        body = loadgen.request_body(image, visualize)
        for level in levels:
            result = asyncio.run(loadgen.closed_loop(url, body, level, args.duration, args.warmup))
            runs.append({"scenario": name, **asdict(result)})
    if open_rate:
        body = loadgen.request_body(images["small"], False)
        result = asyncio.run(loadgen.open_loop(url, body, open_rate, args.duration))
        runs.append({"scenario": "small JPEG", **asdict(result)})
    return runs


def paddlex_model_dir(model_dir: Path, work: Path) -> Path:
    """A copy PaddleX accepts: its registry needs a model name it knows."""
    target = work / "paddlex-model"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model_dir, target)
    spec = (
        (target / "inference.yml")
        .read_text()
        .replace("model_name: EfficientNet-Lite0", "model_name: PP-LCNet_x1_0")
    )
    (target / "inference.yml").write_text(spec)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--quick", action="store_true", help="3 s per measurement")
    parser.add_argument("--paddlex-venv", type=Path, default=HERE / ".paddlex-venv")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    args.out.mkdir(parents=True, exist_ok=True)
    work = HERE / ".cache"
    work.mkdir(exist_ok=True)

    print("preparing the default model and its ONNX conversion", file=sys.stderr)
    model = prepare_model(get_pipeline(load_pipeline_config(PIPELINE)))
    onnx_path = prepare_onnx(model)
    images = {"small": SMALL, "phone": phone_photo(work / "phone-12mp.jpg")}
    report: dict = {"machine": machine(), "duration_s": args.duration, "offline": [], "servers": []}

    for engine, flags in (("paddle", []), ("onnxruntime", ["--use_hpip"])):
        for image_name, visualize in (("small", False), ("phone", False), ("small", True)):
            print(f"offline limit: {engine}, {image_name}, visualize={visualize}", file=sys.stderr)
            engine_onnx = onnx_path if engine != "paddle" else None
            data = images[image_name].read_bytes()
            limit = offline.measure(
                PIPELINE, str(model.path), data, engine, engine_onnx, visualize, args.duration
            )
            report["offline"].append({"image": image_name, "visualize": visualize, **asdict(limit)})
        small_limit = next(o for o in report["offline"] if o["engine"] == engine and o["image"] == "small")
        print(f"pxserve ({engine})", file=sys.stderr)
        process, url = start([sys.executable, "-m", "pxserve", "--serve", "--pipeline", PIPELINE,
                              "--host", "127.0.0.1", *flags], {}, work / f"pxserve-{engine}.log")  # fmt: skip
        try:
            runs = drive(url, images, args, open_rate=round(0.7 * small_limit["images_per_s"]))
        finally:
            stop(process)
        report["servers"].append({"system": f"pxserve {engine}", "runs": runs})

    paddlex = args.paddlex_venv / "bin" / "paddlex"
    if paddlex.is_file():
        print("PaddleX 3.4.3 basic serving", file=sys.stderr)
        pipeline = work / "paddlex-pipeline.yaml"
        pipeline.write_text(
            "pipeline_name: image_classification\nSubModules:\n  ImageClassification:\n"
            "    module_name: image_classification\n    model_name: PP-LCNet_x1_0\n"
            f"    model_dir: {paddlex_model_dir(model.path, work)}\n    batch_size: 1\n    topk: 5\n"
        )
        fonts = sorted(args.paddlex_venv.glob("lib/python*/site-packages/cv2/qt/fonts/DejaVuSans.ttf"))
        env = {
            "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
            "PADDLE_PDX_CACHE_HOME": str(work / "paddlex"),
        }
        if fonts:  # otherwise PaddleX downloads a font to draw labels
            env["PADDLE_PDX_LOCAL_FONT_FILE_PATH"] = str(fonts[0])
        process, url = start([str(paddlex), "--serve", "--pipeline", str(pipeline), "--host", "127.0.0.1"],
                             env, work / "paddlex.log")  # fmt: skip
        try:
            runs = drive(url, images, args, open_rate=None)
        finally:
            stop(process)
        report["servers"].append({"system": "PaddleX 3.4.3", "runs": runs})
    else:
        print(f"PaddleX not found at {paddlex}; run benchmarks/paddlex_setup.sh to compare", file=sys.stderr)

    for server in report["servers"]:  # keep the JSON readable: CDFs only where plotted
        for run in server["runs"]:
            if not (
                run["scenario"] == "small JPEG"
                and run["mode"] == "closed"
                and run["level"] == max(args.concurrency)
            ):
                run.pop("latencies_ms")
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    from report import plot, table

    plot(report, args.out)
    text = table(report)
    (args.out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
