"""Benchmark the OCR pipeline: pxserve (Paddle and --use_hpip) against its
offline limit and against PaddleX 3.4.3 serving the same models, in one run.

    python benchmarks/ocr.py                 # about 20 minutes on 2 cores
    python benchmarks/ocr.py --quick         # shorter runs, for a smoke check

Inputs: the document case is one A4 page of a real PDF
(/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf, page 2) rendered
at 150 dpi as JPEG (1271x1644, 30 text lines); the photo case is
tests/data/ocr/page_region.jpg (712x218, 7 lines); the PDF case is that
document's first 10 pages in one request (fileType 0). Visualize off,
PaddleX's detection settings (full resolution), text-line orientation off
for every system, so that all read the same lines.

The offline limit is the same worker code in-process, no HTTP: one
process of one thread per core, each reading the page in a loop.
Results: benchmarks/results/ocr.json and a Markdown table on stdout.
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
from dataclasses import asdict
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
from run import machine, start, stop  # noqa: E402

SOURCE_PDF = Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf")
PHOTO = HERE.parent / "tests" / "data" / "ocr" / "page_region.jpg"
OFF = {"useTextlineOrientation": False, "visualize": False}
# The models PaddleX is compared on (its answers were recorded with PP-OCRv4, then the default).
CONFIG = "OCR_PP-OCRv4"


def document_page(target: Path) -> Path:
    if not target.is_file():
        import cv2
        import pypdfium2

        pixels = pypdfium2.PdfDocument(str(SOURCE_PDF))[1].render(scale=150 / 72).to_numpy()
        cv2.imwrite(str(target), pixels[:, :, :3], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return target


def body(path: Path, **extra: object) -> bytes:
    return json.dumps({"file": base64.b64encode(path.read_bytes()).decode(), **OFF, **extra}).encode()


# -- the offline limit ---------------------------------------------------------
def _offline_worker(engine: str, image: bytes, duration: float, barrier, results) -> None:
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    from pxserve.frontend.server import prepare_models
    from pxserve.shared.config import load_pipeline_config
    from pxserve.shared.devices import Device
    from pxserve.shared.messages import Task
    from pxserve.shared.model_dir import ModelDir
    from pxserve.shared.pipelines import LoadedModel, RunnerContext, get_pipeline
    from pxserve.workers.backends import BackendOptions, create_backend
    from pxserve.workers.composed_runner import create_runner

    pipeline = get_pipeline(load_pipeline_config(CONFIG))
    models = {}
    for spec in prepare_models(pipeline, engine):
        model = ModelDir.load(spec.model_dir)
        backend = create_backend(model, BackendOptions(Device("cpu"), 1, engine, spec.onnx_path))
        models[spec.key] = LoadedModel(model, backend, Device("cpu"))
    runner = create_runner(pipeline, models, RunnerContext())
    task = Task(0, {"orientation": False}, image, "image")
    runner.run([task])  # warm
    barrier.wait()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < duration:
        assert runner.run([task])[0].ok
        done += 1
    results.put((done, time.perf_counter() - started))


def offline_limit(engine: str, image: Path, duration: float, processes: int) -> float:
    """Pages per second of ``processes`` single-thread processes reading in a loop."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    args = (engine, image.read_bytes(), duration, barrier, results)
    workers = [context.Process(target=_offline_worker, args=args) for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [done / seconds for done, seconds in (results.get(timeout=duration + 600) for _ in workers)]
    for worker in workers:
        worker.join()
    return sum(rates)


# -- servers -------------------------------------------------------------------
def one_request(url: str, payload: bytes) -> tuple[float, int, list[list[str]]]:
    """Seconds, HTTP status, and the text lines of each page answered."""
    started = time.perf_counter()
    response = requests.post(f"{url}/ocr", data=payload, headers={"Content-Type": "application/json"},
                             timeout=1800)  # fmt: skip
    seconds = time.perf_counter() - started
    results = response.json().get("result", {}).get("ocrResults", []) if response.ok else []
    return seconds, response.status_code, [page["prunedResult"]["rec_texts"] for page in results]


def drive(url: str, inputs: dict[str, Path], args: argparse.Namespace, levels: list[int]) -> list[dict]:
    runs = []
    for name, level, duration in [
        *(("document page", c, args.duration) for c in levels),
        ("photo", 1, args.duration / 3),
        ("photo", 4, args.duration / 3),
    ]:
        payload = body(inputs["page" if name == "document page" else "photo"], fileType=1)
        result = asyncio.run(loadgen.closed_loop(url, payload, level, duration, 0.1, route="/ocr"))
        result.latencies_ms = []
        runs.append({"scenario": name, **asdict(result)})
        print(f"  {name} c={level}: {result.rps:.3f}/s p50 {result.p50_ms / 1e3:.2f} s "
              f"errors {result.errors}", file=sys.stderr)  # fmt: skip
    seconds, status, texts = one_request(url, body(inputs["pdf"], fileType=0))
    cer = character_error_rates(inputs["pdf"], texts)
    pdf_run = {"scenario": "10-page PDF", "seconds": round(seconds, 1), "status": status, "pages": len(texts)}
    runs.append({**pdf_run, "cer": cer})
    print(f"  10-page PDF: {seconds:.1f} s ({status}, {len(texts)} pages)", file=sys.stderr)
    return runs


def character_error_rates(pdf: Path, pages: list[list[str]]) -> dict[str, float]:
    """CER of the OCR against the PDF's own text layer, over all pages read.

    Two ways: ignoring whitespace (did it read the characters?) and counting
    it, each run of whitespace as one space (did it also keep the words apart?).
    """
    import re

    import pypdfium2
    from rapidfuzz.distance import Levenshtein

    document = pypdfium2.PdfDocument(str(pdf))
    truth = [document[i].get_textpage().get_text_range() for i in range(len(pages))]
    read = ["\n".join(lines) for lines in pages]
    rates = {}
    for name, squash in (("ignoring_whitespace", lambda t: re.sub(r"\s+", "", t)),
                         ("counting_whitespace", lambda t: re.sub(r"\s+", " ", t).strip())):  # fmt: skip
        expected, got = "".join(squash(t) for t in truth), "".join(squash(t) for t in read)
        rates[name] = round(Levenshtein.distance(got, expected) / max(len(expected), 1), 4)
    return rates


def paddlex_config(work: Path, models: Path) -> Path:
    """PaddleX's OCR.yaml on pxserve's embedded model directories, orientation off."""
    sys.path.insert(0, str(HERE))
    from paddlex_ocr_reference import pipeline_config

    config = pipeline_config(models)
    config["Serving"] = {"extra": {"max_num_input_imgs": 10}}
    path = work / "paddlex-ocr.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per document-page measurement")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--paddlex-venv", type=Path, default=HERE / ".paddlex-venv")
    parser.add_argument("--only", choices=["pxserve", "paddlex"], help="run one side; merge into ocr.json")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.quick:
        args.duration = 20.0
    work = HERE / ".cache"
    work.mkdir(exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = {"page": document_page(work / "a4-150dpi.jpg"), "photo": PHOTO, "pdf": SOURCE_PDF}
    cores = os.cpu_count() or 1
    report: dict = {"machine": machine(), "duration_s": args.duration, "offline": {}, "servers": []}
    previous = args.out / "ocr.json"
    if args.only and previous.is_file():  # keep the other side's numbers from the last full run
        report = json.loads(previous.read_text())
        keep = "PaddleX" if args.only == "pxserve" else "pxserve"
        report["servers"] = [s for s in report["servers"] if s["system"].startswith(keep)]

    subprocess_env = {"PXSERVE_LOG_LEVEL": "WARNING"}
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pxserve", "--prepare", "--pipeline", CONFIG, "--use_hpip"], check=True
    )
    for engine, flags in (("onnxruntime", ["--use_hpip"]), ("paddle", [])) if args.only != "paddlex" else ():
        print(f"offline limit, {engine}: {cores} processes x 1 thread", file=sys.stderr)
        limit = offline_limit(engine, inputs["page"], args.duration, cores)
        report["offline"][engine] = round(limit, 4)
        print(f"  {limit:.3f} pages/s", file=sys.stderr)
        print(f"pxserve ({engine})", file=sys.stderr)
        command = [
            sys.executable,
            "-m",
            "pxserve",
            "--serve",
            "--pipeline",
            CONFIG,
            "--host",
            "127.0.0.1",
            *flags,
        ]
        process, url = start(command, subprocess_env, work / f"pxserve-ocr-{engine}.log")
        try:
            runs = drive(url, inputs, args, [1, 4, 8])
        finally:
            stop(process)
        report["servers"].append({"system": f"pxserve {engine}", "runs": runs})

    paddlex = args.paddlex_venv / "bin" / "paddlex"
    if paddlex.is_file() and args.only != "pxserve":
        from pxserve.shared.cache import cache_root

        print(
            "PaddleX 3.4.3 basic serving (oneDNN off: with it on, every OCR request is a 500)",
            file=sys.stderr,
        )
        env = {
            "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
            "PADDLE_PDX_CACHE_HOME": str(work / "paddlex"),
            "PADDLE_PDX_ENABLE_MKLDNN_BYDEFAULT": "False",
        }
        command = [str(paddlex), "--serve", "--pipeline", str(paddlex_config(work, cache_root() / "models")),
                   "--host", "127.0.0.1"]  # fmt: skip
        process, url = start(command, env, work / "paddlex-ocr.log")
        try:
            runs = drive(url, inputs, args, [1, 4])
        finally:
            stop(process)
        report["servers"].append({"system": "PaddleX 3.4.3", "runs": runs})
    (args.out / "ocr.json").write_text(json.dumps(report, indent=1))
    print(table(report))
    return 0


def table(report: dict) -> str:
    lines = [
        "| system | page c=1 p50 | pages/s c=1 | c=4 | c=8 | photo c=1 p50 | photos/s c=4 | 10-page PDF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server in report["servers"]:
        runs = server["runs"]

        def find(scenario: str, level: int, runs: list[dict] = runs) -> dict | None:
            return next((r for r in runs if r["scenario"] == scenario and r.get("level") == level), None)

        def rate(run: dict | None) -> str:
            return f"{run['rps']:.3f}" if run else "-"

        page1, photo1 = find("document page", 1), find("photo", 1)
        pdf = next(r for r in runs if r["scenario"] == "10-page PDF")
        lines.append(
            f"| {server['system']} | {page1['p50_ms'] / 1e3:.2f} s | {rate(page1)} | "
            f"{rate(find('document page', 4))} | {rate(find('document page', 8))} | "
            f"{photo1['p50_ms'] / 1e3:.2f} s | {rate(find('photo', 4))} | {pdf['seconds']} s |"
        )
    lines.append("\n| system | CER ignoring whitespace | CER counting whitespace |\n|---|---|---|")
    for server in report["servers"]:
        cer = next(r for r in server["runs"] if r["scenario"] == "10-page PDF").get("cer") or {}
        lines.append(
            f"| {server['system']} | {cer.get('ignoring_whitespace')} | {cer.get('counting_whitespace')} |"
        )
    offline = ", ".join(f"{k} {v:.3f} pages/s" for k, v in report["offline"].items())
    lines.append(f"\nOffline limit (same code, no HTTP, one process of one thread per core): {offline}.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
