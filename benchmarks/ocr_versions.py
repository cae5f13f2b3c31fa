"""PP-OCRv4 mobile against PP-OCRv5 mobile: which reader to ship as OCR's default.

    python benchmarks/ocr_versions.py            # about 15 minutes on 2 cores

Both shipped configs (``OCR_PP-OCRv4``: v4, ``OCR``: v5), each on Paddle
and on ONNX Runtime (``--use_hpip``), serve the same pages: the first
``--pages`` pages of a real PDF (/usr/share/doc/shared-mime-info/
shared-mime-info-spec.pdf) rendered at 150 dpi as JPEG, text-line
orientation off. Measured per run: the character error rate against the
PDF's own text layer (ignoring whitespace, and counting it), seconds per
page one at a time (c=1), pages per second with 4 clients, and each
worker's peak RSS. Results: benchmarks/results/ocr_versions.json and a
Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ocr import SOURCE_PDF, character_error_rates  # noqa: E402
from run import machine, start, stop  # noqa: E402

CONFIGS = {"PP-OCRv4 mobile": "OCR_PP-OCRv4", "PP-OCRv5 mobile": "OCR"}
ENGINES = {"paddle": [], "onnxruntime": ["--use_hpip"]}


def pages(work: Path, count: int) -> list[Path]:
    import cv2
    import pypdfium2

    document = pypdfium2.PdfDocument(str(SOURCE_PDF))
    paths = []
    for i in range(count):
        target = work / f"page-{i + 1}.jpg"
        if not target.is_file():
            pixels = document[i].render(scale=150 / 72).to_numpy()
            cv2.imwrite(str(target), pixels[:, :, :3], [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(target)
    return paths


def read(url: str, page: Path) -> tuple[float, list[str]]:
    body = {
        "file": base64.b64encode(page.read_bytes()).decode(),
        "fileType": 1,
        "useTextlineOrientation": False,
    }
    started = time.monotonic()
    response = requests.post(f"{url}/ocr", json=body, timeout=600)
    elapsed = time.monotonic() - started
    response.raise_for_status()
    return elapsed, response.json()["result"]["ocrResults"][0]["prunedResult"]["rec_texts"]


def peak_rss_mib(server_pid: int) -> list[float]:
    """VmHWM of each worker (the server's children)."""
    found = []
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            status = Path(f"/proc/{child}/status").read_text()
            hwm = next(ln for ln in status.splitlines() if ln.startswith("VmHWM"))
            found.append(round(int(hwm.split()[1]) / 1024, 1))
    return found


def measure(config: str, flags: list[str], inputs: list[Path], work: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "pxserve",
        "--serve",
        "--pipeline",
        config,
        "--host",
        "127.0.0.1",
        *flags,
    ]
    process, url = start(command, {}, work / f"server-{config}-{'hpip' if flags else 'paddle'}.log")
    try:
        read(url, inputs[0])  # first call per shape: warm
        latencies, texts = [], []
        for page in inputs:
            elapsed, lines = read(url, page)
            latencies.append(elapsed)
            texts.append(lines)
        load = inputs * 2
        started = time.monotonic()
        with ThreadPoolExecutor(4) as clients:
            list(clients.map(lambda p: read(url, p), load))
        throughput = len(load) / (time.monotonic() - started)
        rss = peak_rss_mib(process.pid)
    finally:
        stop(process)
    return {
        "cer": character_error_rates(SOURCE_PDF, texts),
        "seconds_per_page_c1": round(statistics.mean(latencies), 2),
        "pages_per_s_c4": round(throughput, 3),
        "worker_peak_rss_mib": rss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=6)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    work = HERE / ".cache" / "ocr_versions"
    work.mkdir(parents=True, exist_ok=True)
    inputs = pages(work, args.pages)
    runs = []
    for reader, config in CONFIGS.items():
        for engine, flags in ENGINES.items():
            print(f"{reader} on {engine} ...", flush=True)
            runs.append(
                {"reader": reader, "config": config, "engine": engine, **measure(config, flags, inputs, work)}
            )
            print(json.dumps(runs[-1]), flush=True)
    report = {"machine": machine(), "pages": args.pages, "source": str(SOURCE_PDF), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ocr_versions.json").write_text(json.dumps(report, indent=1))
    print("| reader | engine | CER (no spaces) | CER (spaces) | s/page c=1 | pages/s c=4 | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        cer = run["cer"]
        print(
            f"| {run['reader']} | {run['engine']} | {cer['ignoring_whitespace']} "
            f"| {cer['counting_whitespace']} | {run['seconds_per_page_c1']} | {run['pages_per_s_c4']} "
            f"| {max(run['worker_peak_rss_mib'])} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
