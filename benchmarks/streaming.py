"""A 300-page PDF read by /ocr: streamed page by page, against one whole answer. Front memory.

    python benchmarks/streaming.py               # about 10 minutes on 2 cores
    python benchmarks/streaming.py --pages 40    # a smoke check

Each page is A5 with four short lines of Helvetica text (rendered at PaddleX's
144 dpi: 840x1190), read with ``visualize`` on, so each page's
entry carries two page-sized JPEGs, as PaddleX answers by default. One fresh
server per mode (OCR, two workers, one thread each):

* streamed: ``Accept: application/x-ndjson``, the default
  ``max_stream_pages`` (1000);
* whole: one JSON answer, with ``max_pdf_pages`` raised to the page count
  (PaddleX's default of 10 would drop 290 pages), the request deadline
  raised to match, and ``request_ring_mb`` raised to 256 (the task that puts
  the pages together carries all of them: 86 MiB here; with the default
  48 MiB the answer is a 413 that says to stream it).

A 40-page document is streamed too: the front's memory should not depend
on the page count. Recorded: time to the first page and to the end,
pages/s, bytes received, the front process's memory sampled every 0.1 s
(before and peak; its heap, RssAnon, apart from its resident total, which
also counts the pages of the shared-memory rings it has written to) and
each worker's peak. Results:
benchmarks/results/streaming.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

import requests
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import pdfs  # noqa: E402
from multi_pipeline import MemoryWatch  # noqa: E402
from run import machine, start, stop  # noqa: E402

MIB = 2**20
LINES = ["Each page as soon as it is done,", "a few pages held at a time,", "and none read for nobody."]


def document(pages: int) -> bytes:
    texts = ["\n".join([f"Page {i} of {pages}", *LINES]) for i in range(pages)]
    return pdfs.text_pages(texts, size_pt=(420, 595), font_pt=9)


def status_of(pid: int) -> dict[str, int]:
    """Memory fields of /proc/<pid>/status, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.startswith(("Vm", "Rss")) and value.strip().endswith("kB"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


class FrontWatch:
    """The front process's memory, sampled in a thread: all resident memory (which counts the
    pages of the shared-memory rings it has touched) and its own heap (RssAnon) apart."""

    def __init__(self, pid: int) -> None:
        self.pid, self.before, self.peak = pid, status_of(pid), {"VmRSS": 0, "RssAnon": 0, "RssShmem": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = status_of(self.pid)
            self.peak = {name: max(value, now.get(name, 0)) for name, value in self.peak.items()}

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {
            "front_before_mib": round(self.before["VmRSS"] / MIB, 1),
            "front_peak_mib": round(self.peak["VmRSS"] / MIB, 1),
            "front_heap_before_mib": round(self.before["RssAnon"] / MIB, 1),
            "front_heap_peak_mib": round(self.peak["RssAnon"] / MIB, 1),
            "front_ring_pages_peak_mib": round(self.peak["RssShmem"] / MIB, 1),
        }


def serve(work: Path, serving: dict[str, object]) -> tuple[object, str]:
    config = yaml.safe_load((resources.files("pxserve.configs") / "OCR_PP-OCRv4.yaml").read_text())
    config["Serving"].update({"instances_per_device": 2, "cpu_threads": 1, **serving})
    path = work / f"ocr-{len(list(work.glob('ocr-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", str(path), "--host", "127.0.0.1"]
    return start([*command, "--device", "cpu"], {}, work / f"{path.stem}.log")


def measure(work: Path, pages: int, streamed: bool) -> dict[str, object]:
    # A whole answer's pages are put together by one task, through a request ring: it must hold them all.
    whole = {"max_pdf_pages": pages, "request_timeout_s": 3600, "request_ring_mb": 256}
    serving: dict[str, object] = {} if streamed else whole
    process, url = serve(work, serving)
    payload = {"file": base64.b64encode(document(pages)).decode(), "fileType": 0, "visualize": True}
    try:
        warm = {**payload, "file": base64.b64encode(document(2)).decode()}
        requests.post(f"{url}/ocr", json=warm, timeout=300)
        front, workers = FrontWatch(process.pid), MemoryWatch(process.pid)
        headers = {"Accept": "application/x-ndjson"} if streamed else {}
        started = time.monotonic()
        response = requests.post(f"{url}/ocr", json=payload, headers=headers, stream=True, timeout=3600)
        first, received, read = None, 0, 0
        if streamed:
            for line in response.iter_lines():
                received += len(line) + 1
                entry = json.loads(line)
                if entry["errorCode"] != 0:
                    raise RuntimeError(entry["errorMsg"])
                if "pageIndex" in entry:
                    first = first or time.monotonic() - started
                    read += 1
        else:
            body = response.content
            received, first = len(body), time.monotonic() - started
            answer = json.loads(body)
            if answer["errorCode"] != 0:
                raise RuntimeError(f"{answer['errorCode']}: {answer['errorMsg']}")
            read = len(answer["result"]["ocrResults"])
        seconds = time.monotonic() - started
        memory = {**front.stop(), **{f"worker_{k}": v for k, v in workers.stop().items()}}
    finally:
        stop(process)
    return {
        "mode": "streamed" if streamed else "whole",
        "pages": read,
        "first_page_s": round(first or seconds, 2),
        "seconds": round(seconds, 1),
        "pages_per_s": round(read / seconds, 2),
        "received_mib": round(received / MIB, 1),
        **memory,
    }


def table(report: dict) -> str:
    columns = ["answer", "pages", "first page", "all pages", "pages/s", "received"]
    columns += ["front heap before / peak", "front RSS before / peak (rings touched)", "worker peak"]
    rows = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for r in report["results"]:
        rows.append(
            f"| {r['mode']} | {r['pages']} | {r['first_page_s']} s | {r['seconds']} s | {r['pages_per_s']} | "
            f"{r['received_mib']} MiB | {r['front_heap_before_mib']} / {r['front_heap_peak_mib']} MiB | "
            f"{r['front_before_mib']} / {r['front_peak_mib']} MiB ({r['front_ring_pages_peak_mib']}) | "
            f"{r['worker_peak_mib']} MiB |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--short", type=int, default=40, help="a shorter document, streamed, for comparison")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "streaming.json")
    parser.add_argument("--modes", nargs="+", choices=["streamed", "whole"], default=["streamed", "whole"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = [(args.short, True)] if "streamed" in args.modes else []
        runs += [(args.pages, mode == "streamed") for mode in args.modes]
        results = [measure(Path(folder), pages, streamed) for pages, streamed in runs]
    report = {"machine": machine(), "pages": args.pages, "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
