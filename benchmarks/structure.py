"""PP-StructureV3 (/layout-parsing): what a page costs next to /ocr, against its in-process limit.

    python benchmarks/structure.py [--seconds 40]     # about 12 minutes on 2 cores

One server per engine (Paddle, then --use_hpip), two workers of one thread,
serving PP-StructureV3 and, as /ocr, its own GeneralOCR settings (the same
models and settings: the OCR a /layout-parsing page runs). Pages: the four
150-dpi page photos of tests/structure_docs.py's articles. Measured, in one
run per engine:

* c=1: each page through /layout-parsing and /ocr in turn (A/B on the same
  server), the median seconds of each and their ratio;
* c=4: /layout-parsing pages per second, closed loop, against the in-process
  limit (benchmarks/limit.py): one process per core, each running the same pipeline's runner
  over the same pages in a loop (fan-outs run in place, no server);
* a 30-page PDF (the articles' pages over and over) streamed as NDJSON: time
  to its first page, against one page's c=1 time;
* each worker's peak RSS (VmHWM).

Results: benchmarks/results/structure.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from limit import in_process_limit  # noqa: E402
from ocr_versions import peak_rss_mib  # noqa: E402
from run import machine, start, stop  # noqa: E402

DOCUMENTS = ("article_one_column", "article_two_columns")
ENGINES = {"paddle": [], "onnxruntime": ["--use_hpip"]}


def page_photos() -> list[bytes]:
    import pypdfium2

    pages = []
    for name in DOCUMENTS:
        document = pypdfium2.PdfDocument(str(ROOT / "tests" / "data" / "structure" / f"{name}.pdf"))
        for i in range(len(document)):
            buffer = io.BytesIO()
            document[i].render(scale=150 / 72).to_pil().convert("RGB").save(buffer, "JPEG", quality=90)
            pages.append(buffer.getvalue())
    return pages


def long_pdf(pages: int) -> bytes:
    """The articles' pages, over and over, as one PDF."""
    import pypdfium2

    sources = [
        pypdfium2.PdfDocument(str(ROOT / "tests" / "data" / "structure" / f"{n}.pdf")) for n in DOCUMENTS
    ]
    target = pypdfium2.PdfDocument.new()
    while len(target) < pages:
        source = sources[len(target) % len(sources)]
        target.import_pages(source, [len(target) // len(sources) % len(source)])
    buffer = io.BytesIO()
    target.save(buffer)
    return buffer.getvalue()


def ocr_config(work: Path) -> Path:
    """PP-StructureV3's GeneralOCR, served alone as /ocr."""
    structure = yaml.safe_load((ROOT / "configs" / "PP-StructureV3.yaml").read_text())
    config = {**structure["SubPipelines"]["GeneralOCR"], "Serving": structure["Serving"]}
    path = work / "general-ocr.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def post(url: str, route: str, page: bytes, **fields: object) -> float:
    body = {"file": base64.b64encode(page).decode(), "fileType": 1, **fields}
    started = time.monotonic()
    response = requests.post(f"{url}{route}", json=body, timeout=600)
    response.raise_for_status()
    return time.monotonic() - started


def closed_loop(url: str, pages: list[bytes], clients: int, seconds: float) -> float:
    done, deadline = [0], time.monotonic() + seconds
    started = time.monotonic()

    def client(offset: int) -> None:
        i = offset
        while time.monotonic() < deadline:
            post(url, "/layout-parsing", pages[i % len(pages)])
            done[0] += 1
            i += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return done[0] / (time.monotonic() - started)


def first_streamed_page(url: str, pdf: bytes) -> tuple[float, float, int]:
    body = {"file": base64.b64encode(pdf).decode(), "fileType": 0}
    started = time.monotonic()
    first, lines = None, 0
    with requests.post(
        f"{url}/layout-parsing",
        json=body,
        headers={"Accept": "application/x-ndjson"},
        stream=True,
        timeout=3600,
    ) as response:
        for line in response.iter_lines():
            if line:
                lines += 1
                first = first or time.monotonic() - started
    return round(first or 0.0, 2), round(time.monotonic() - started, 1), lines - 1


def measure(
    engine: str, flags: list[str], pages: list[bytes], pdf: bytes, seconds: float, work: Path
) -> dict:
    command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", "PP-StructureV3"]
    command += ["--pipeline", str(ocr_config(work)), "--host", "127.0.0.1", "--device", "cpu", *flags]
    process, url = start(command, {}, work / f"server-{engine}.log")
    try:
        for page in pages:  # warm every shape on both routes
            post(url, "/layout-parsing", page)
            post(url, "/ocr", page, useTextlineOrientation=False)
        structure, ocr = [], []
        for _ in range(2):
            for page in pages:  # A/B, one page at a time
                structure.append(post(url, "/layout-parsing", page))
                ocr.append(post(url, "/ocr", page, useTextlineOrientation=False))
        throughput = closed_loop(url, pages, 4, seconds)
        first, total, streamed = first_streamed_page(url, pdf)
        rss = peak_rss_mib(process.pid)
    finally:
        stop(process)
    bodies = [
        {"file": base64.b64encode(page).decode(), "fileType": 1} for page in pages
    ]  # as post sends them
    limit = in_process_limit("PP-StructureV3", engine, bodies, seconds)
    page_c1 = statistics.median(structure)
    return {
        "layout_parsing_p50_c1_s": round(page_c1, 2),
        "ocr_p50_c1_s": round(statistics.median(ocr), 2),
        "cost_vs_ocr": round(page_c1 / statistics.median(ocr), 2),
        "pages_per_s_c4": round(throughput, 3),
        "in_process_limit_pages_per_s": round(limit, 3),
        "fraction_of_limit_c4": round(throughput / limit, 2),
        "stream_30_pages_first_s": first,
        "stream_30_pages_total_s": total,
        "stream_pages": streamed,
        "first_page_vs_one_page": round(first / page_c1, 2),
        "worker_peak_rss_mib": sorted(rss)[-2:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    work = HERE / ".cache" / "structure"
    work.mkdir(parents=True, exist_ok=True)
    pages, pdf = page_photos(), long_pdf(30)
    runs = []
    for engine in args.engines:
        print(f"PP-StructureV3 on {engine} ...", file=sys.stderr, flush=True)
        runs.append({"engine": engine, **measure(engine, ENGINES[engine], pages, pdf, args.seconds, work)})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "seconds": args.seconds, "runs": runs}
    (args.out / "structure.json").write_text(json.dumps(report, indent=1))
    print("| engine | page p50 c=1: layout-parsing / ocr | pages/s c=4 / in-process limit | "
          "30-page stream: first page | peak worker RSS |")  # fmt: skip
    print("|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {run['engine']} | {run['layout_parsing_p50_c1_s']} s / {run['ocr_p50_c1_s']} s "
            f"(x{run['cost_vs_ocr']}) | {run['pages_per_s_c4']} / {run['in_process_limit_pages_per_s']} "
            f"({run['fraction_of_limit_c4']}) | {run['stream_30_pages_first_s']} s "
            f"(x{run['first_page_vs_one_page']} of a page) | {max(run['worker_peak_rss_mib'])} MiB |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
