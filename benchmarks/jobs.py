"""Jobs (PaddleOCR's job API) against direct requests, on one OCR server.

    python benchmarks/jobs.py                  # about 10 minutes on 2 cores
    python benchmarks/jobs.py --soak-minutes 30   # only 30 minutes of jobs, RSS sampled

Pages are real text pages (tests/data/ocr's page photos, A4 at 150 dpi), ten to a PDF.
One server (OCR, the shipped config, two workers); measured:

* overhead: the 10-page PDF as a job (submit, poll every 0.2 s, fetch the result file)
  against the same PDF sent directly to /ocr (one answer), alternating, ``--rounds`` each;
* fairness: a single page sent directly on the idle server, then again while 20 ten-page
  jobs are queued (issue: at most 2x);
* filling idle capacity: pages/s with only jobs running (4 ten-page jobs at once) against
  the same 40 pages sent directly as one-page PDFs at concurrency 4, alternating ``--rounds``
  times (issue: at least 0.9);
* memory: the front's and each worker's RSS, sampled every 0.5 s, and with
  ``--soak-minutes`` a stream of jobs for that long (a job submitted whenever fewer than
  four are unfinished), sampled each minute.

Results: benchmarks/results/jobs.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import pdfs  # noqa: E402
from multi_pipeline import MemoryWatch  # noqa: E402
from run import machine, start, stop  # noqa: E402
from soak import worker_rss  # noqa: E402

JOBS = "/api/v2/ocr/jobs"
MIB = 2**20
PHOTOS = ["page_region.jpg", "page_top.jpg", "half_upside_down.jpg"]


def page_pdf(count: int, first: int = 0) -> bytes:
    """``count`` pages, each one of the test page photos on A4 at 150 dpi."""
    images = []
    for i in range(first, first + count):
        photo = Image.open(ROOT / "tests" / "data" / "ocr" / PHOTOS[i % len(PHOTOS)]).convert("RGB")
        photo.thumbnail((1240, 1754))
        page = Image.new("RGB", (1240, 1754), "white")
        page.paste(photo, (0, 0))
        images.append(page)
    return pdfs.from_images(images, dpi=150)


def submit(url: str, data: bytes) -> str:
    response = requests.post(f"{url}{JOBS}", data={"model": "PP-OCRv6", "optionalPayload": "{}"},
                             files={"file": ("doc.pdf", data)}, timeout=300)  # fmt: skip
    response.raise_for_status()
    return response.json()["data"]["jobId"]


def finish(url: str, job_id: str, poll_s: float = 0.2) -> int:
    """Wait for a job, fetch its result; its page count."""
    while True:
        data = requests.get(f"{url}{JOBS}/{job_id}", timeout=60).json()["data"]
        if data["state"] == "done":
            return len(requests.get(data["resultUrl"]["jsonUrl"], timeout=60).content.splitlines())
        if data["state"] == "failed":
            raise RuntimeError(data["errorMsg"])
        time.sleep(poll_s)


def direct(url: str, data: bytes) -> int:
    body = {"file": base64.b64encode(data).decode(), "fileType": 0}
    response = requests.post(f"{url}/ocr", json=body, timeout=600)
    response.raise_for_status()
    return len(response.json()["result"]["ocrResults"])


def overhead(url: str, rounds: int) -> dict:
    document = page_pdf(10)
    times: dict[str, list[float]] = {"job": [], "direct": []}
    direct(url, document)  # warm up
    for _ in range(rounds):
        for mode in ("job", "direct"):
            started = time.perf_counter()
            pages = finish(url, submit(url, document)) if mode == "job" else direct(url, document)
            assert pages == 10
            times[mode].append(time.perf_counter() - started)
    job, plain = statistics.median(times["job"]), statistics.median(times["direct"])
    return {
        "job_s": round(job, 2),
        "direct_s": round(plain, 2),
        "ratio": round(job / plain, 3),
        "runs": times,
    }


def fairness(url: str, samples: int) -> dict:
    page = page_pdf(1, first=1)
    idle = [_timed(lambda: direct(url, page)) for _ in range(samples)]
    backlog = [submit(url, page_pdf(10)) for _ in range(20)]
    busy = [_timed(lambda: direct(url, page)) for _ in range(samples)]
    for job_id in backlog:
        requests.delete(f"{url}{JOBS}/{job_id}", timeout=30)
    idle_s, busy_s = statistics.median(idle), statistics.median(busy)
    ratio = round(busy_s / idle_s, 3)
    return {
        "idle_s": round(idle_s, 3),
        "under_20_jobs_s": round(busy_s, 3),
        "ratio": ratio,
        "idle": idle,
        "busy": busy,
    }


def capacity(url: str, jobs: int, rounds: int) -> dict:
    """Pages/s of ``jobs`` ten-page jobs at once against the same pages sent directly as one-page
    PDFs at concurrency 4, the two alternating ``rounds`` times (the machine drifts)."""
    documents = [page_pdf(10, first=j) for j in range(jobs)]
    singles = [page_pdf(1, first=i) for i in range(jobs * 10)]
    seconds = {"jobs": 0.0, "direct": 0.0}
    for _ in range(rounds):
        started = time.perf_counter()
        with ThreadPoolExecutor(jobs) as pool:
            assert sum(pool.map(lambda d: finish(url, submit(url, d)), documents)) == jobs * 10
        seconds["jobs"] += time.perf_counter() - started
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            assert sum(pool.map(lambda d: direct(url, d), singles)) == jobs * 10
        seconds["direct"] += time.perf_counter() - started
    pages = jobs * 10 * rounds
    job_rate, direct_rate = pages / seconds["jobs"], pages / seconds["direct"]
    return {"jobs_pages_per_s": round(job_rate, 3), "direct_c4_pages_per_s": round(direct_rate, 3),
            "ratio": round(job_rate / direct_rate, 3), "rounds": rounds}  # fmt: skip


def soak(url: str, pid: int, minutes: float) -> dict:
    """Jobs for ``minutes`` (four unfinished at any time); RSS each minute."""
    samples: list[dict] = []
    stop_at = time.monotonic() + minutes * 60
    done = [0]
    counting = threading.Lock()
    documents = [page_pdf(10, first=j) for j in range(3)]

    def client(index: int) -> None:
        while time.monotonic() < stop_at:
            pages = finish(url, submit(url, documents[index % 3]), poll_s=1.0)
            with counting:  # not done[0] += finish(...): that reads done[0] before the job's minute
                done[0] += pages

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    while any(t.is_alive() for t in threads):
        time.sleep(5)
        if not samples or time.monotonic() - started >= 60 * len(samples):
            workers = {k: v // MIB for k, v in worker_rss(pid).items()}
            minute = round((time.monotonic() - started) / 60, 1)
            samples.append(
                {"minute": minute, "front_mib": _rss(pid) // MIB, "workers_mib": workers, "pages": done[0]}
            )
    return {"minutes": minutes, "pages": done[0], "samples": samples}


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--soak-minutes", type=float, default=0)
    parser.add_argument("--only", choices=["overhead", "fairness", "capacity"], action="append")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", "OCR", "--host", "127.0.0.1"]
        command += ["--device", "cpu", "--data-dir", str(folder / "data")]
        process, url = start(command, {}, folder / "server.log")
        watch = MemoryWatch(process.pid)
        front_peak = [0]
        sampler = threading.Event()

        def sample_front() -> None:
            while not sampler.wait(0.5):
                front_peak[0] = max(front_peak[0], _rss(process.pid))

        threading.Thread(target=sample_front, daemon=True).start()
        results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
        try:
            steps = args.only or ([] if args.soak_minutes else ["overhead", "fairness", "capacity"])
            if "overhead" in steps:
                results["overhead"] = overhead(url, args.rounds)
                print("overhead", {k: v for k, v in results["overhead"].items() if k != "runs"}, flush=True)
            if "fairness" in steps:
                results["fairness"] = fairness(url, args.samples)
                print(
                    "fairness",
                    {k: v for k, v in results["fairness"].items() if k not in ("idle", "busy")},
                    flush=True,
                )
            if "capacity" in steps:
                results["capacity"] = capacity(url, args.jobs, args.rounds)
                print("capacity", results["capacity"], flush=True)
            if args.soak_minutes:
                results["soak"] = soak(url, process.pid, args.soak_minutes)
                print("soak", results["soak"]["samples"][-1], flush=True)
        finally:
            sampler.set()
            results["memory"] = {**watch.stop(), "front_peak_mib": front_peak[0] // MIB}
            stop(process)
    print("memory", results["memory"])
    out = HERE / "results" / ("jobs-soak.json" if args.soak_minutes else "jobs.json")
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
