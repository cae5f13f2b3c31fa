"""A born-digital PDF through PP-StructureV3: its own text against OCR, and a 300-page Word export.

    python benchmarks/text_layer.py          # about 6 minutes on 2 cores

One server per engine (Paddle, then --use_hpip), two workers. Documents with
a text layer and known text: the two typeset articles of tests/structure_docs.py
(pdflatex, two pages each) and the typed manual of tests/text_layers.py. Each
document is sent with ``usePdfTextLayer`` true and false in turn on the same
server (A/B, requests alternating), three rounds. Measured per path:

* seconds per page (the request's time over its pages, median);
* Markdown quality against the truth: the mean character error rate of each
  known paragraph's best match, and whether the headings are exactly right
  (text and level);
* pages whose layer is refused (a scan, a scanner's invisible layer, a lying
  map): their time with the layer asked for (read, checked, refused, then
  OCR) against OCR alone, alternating;
* then, on a fresh server each, a 300-page PDF (the articles' pages over and
  over) streamed as NDJSON with ``outputFormats: ["docx"]`` and without:
  seconds, and each worker's peak RSS (VmHWM), so a long Word export is seen
  to cost no more memory than reading the pages.

Results: benchmarks/results/text_layer.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import structure_docs  # noqa: E402
import text_layers  # noqa: E402
from ocr_versions import peak_rss_mib  # noqa: E402
from readers import cer  # noqa: E402
from run import machine, start, stop  # noqa: E402

ENGINES = {"paddle": [], "onnxruntime": ["--use_hpip"]}
HEADINGS = [
    "# " + structure_docs.TITLE, "## 1 Introduction", "## 2 Methods", "### 2.1 Stations", "### 2.2 Flow",
    "## 3 Results", "## 4 Discussion",
]  # fmt: skip
MANUAL_HEADINGS = [
    f"# {text_layers.TITLE}", f"## {text_layers.SECTION}", f"#### {text_layers.RUN_IN}",
    f"### {text_layers.SUBSECTION}",
]  # fmt: skip


def documents() -> list[tuple[str, bytes, list[str], list[str]]]:
    """(name, PDF, its paragraphs, its headings as Markdown)."""
    data = ROOT / "tests" / "data" / "structure"
    found = []
    for name, two in (("article_one_column", False), ("article_two_columns", True)):
        paragraphs = [b.text for b in structure_docs.article(two) if b.kind == "text"]
        found.append((name, (data / f"{name}.pdf").read_bytes(), paragraphs, HEADINGS))
    found.append(("typed manual", text_layers.typed(), text_layers.truth_paragraphs(), MANUAL_HEADINGS))
    return found


def parse(url: str, pdf: bytes, own_text: bool, **fields: object) -> tuple[float, list[dict]]:
    body = {"file": base64.b64encode(pdf).decode(), "usePdfTextLayer": own_text, **fields}
    started = time.monotonic()
    response = requests.post(f"{url}/layout-parsing", json=body, timeout=900)
    elapsed = time.monotonic() - started
    response.raise_for_status()
    return elapsed, response.json()["result"]["layoutParsingResults"]


def quality(pages: list[dict], paragraphs: list[str], headings: list[str]) -> tuple[float, bool]:
    markdown = "\n\n".join(page["markdown"]["text"] for page in pages)
    found = [p.strip() for p in markdown.split("\n\n") if p.strip()]
    errors = [min(cer(candidate, paragraph) for candidate in found) for paragraph in paragraphs]
    return statistics.mean(errors), [p for p in found if p.startswith("#")] == headings


def compare(url: str, rounds: int) -> list[dict]:
    rows = []
    for name, pdf, paragraphs, headings in documents():
        times: dict[bool, list[float]] = {True: [], False: []}
        scores: dict[bool, tuple[float, bool]] = {}
        used: dict[bool, int] = {}
        for _ in range(rounds):
            for own_text in (True, False):
                elapsed, pages = parse(url, pdf, own_text)
                times[own_text].append(elapsed / len(pages))
                scores[own_text] = quality(pages, paragraphs, headings)
                used[own_text] = sum(bool(p["prunedResult"]["text_layer_res"]["used"]) for p in pages)
        for own_text in (True, False):
            rows.append(
                {
                    "document": name,
                    "path": "own text" if own_text else "OCR",
                    "pages_from_own_text": used[own_text],
                    "seconds_per_page": round(statistics.median(times[own_text]), 3),
                    "paragraph_cer": round(scores[own_text][0], 4),
                    "headings_right": scores[own_text][1],
                }
            )
        rows[-2]["time_vs_ocr"] = round(rows[-2]["seconds_per_page"] / rows[-1]["seconds_per_page"], 2)
    return rows


FALLBACKS = ("scanned", "invisible_over_scan", "lying_map")  # tests/text_layers.py's


def fallbacks(url: str, rounds: int) -> list[dict]:
    """Pages whose layer is refused: their time with the layer asked for (read, checked, then
    OCR) against OCR alone, alternating. The same file each round, so after the first the
    worker remembers a lying layer's verdict; the first round's time is kept apart."""
    rows = []
    for name in FALLBACKS:
        pdf = getattr(text_layers, name)()
        times: dict[bool, list[float]] = {True: [], False: []}
        reason = ""
        for _ in range(rounds):
            for own_text in (True, False):
                elapsed, pages = parse(url, pdf, own_text)
                times[own_text].append(elapsed)
                if own_text:
                    reason = pages[0]["prunedResult"]["text_layer_res"]["reason"]
        first, asked = times[True][0], statistics.median(times[True][1:])
        ocr = statistics.median(times[False])
        rows.append({"page": name, "reason": reason, "first_asked_s": round(first, 3),
                     "asked_s": round(asked, 3), "ocr_s": round(ocr, 3), "ratio": round(asked / ocr, 3),
                     "first_ratio": round(first / ocr, 3)})  # fmt: skip
    return rows


def long_pdf(pages: int) -> bytes:
    import pypdfium2

    sources = [pypdfium2.PdfDocument(pdf) for _, pdf, _, _ in documents()[:2]]
    out = pypdfium2.PdfDocument.new()
    while len(out) < pages:
        for source in sources:
            out.import_pages(source)
    while len(out) > pages:
        out.del_page(len(out) - 1)
    buffer = io.BytesIO()
    out.save(buffer)
    return buffer.getvalue()


def stream(url: str, pdf: bytes, **fields: object) -> tuple[float, int, int]:
    """Seconds, pages and bytes of a streamed answer."""
    body = {"file": base64.b64encode(pdf).decode(), **fields}
    started = time.monotonic()
    pages = size = 0
    headers = {"Accept": "application/x-ndjson"}
    url = f"{url}/layout-parsing"
    with requests.post(url, json=body, headers=headers, stream=True, timeout=3600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            size += len(line)
            pages += '"pageIndex"' in line.decode("utf-8", "replace")[:200]
    return time.monotonic() - started, pages, size


def print_table(report: dict, part: str, columns: list[str]) -> None:
    """One Markdown table of every engine's rows of ``part``."""
    print("| engine | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for engine, result in report["engines"].items():
        for row in result[part]:
            cells = [
                ", ".join(map(str, v)) if isinstance(v, list) else str(v)
                for v in (row.get(c, "") for c in columns)
            ]
            print(f"| {engine} | " + " | ".join(cells) + " |")


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pages", type=int, default=300, help="pages of the long document (Word export)")
    parser.add_argument("--fallbacks-only", action="store_true", help="only the refused layers' cost")
    args = parser.parse_args()
    work = HERE / ".cache" / "text_layer"
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": machine(), "engines": {}}
    command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", "PP-StructureV3"]
    command += ["--host", "127.0.0.1"]
    for engine, flags in ENGINES.items():
        print(f"{engine}: own text against OCR ...", flush=True)
        process, url = start([*command, *flags], {}, work / f"server-{engine}.log")
        try:
            parse(url, documents()[0][1], True)
            parse(url, documents()[0][1], False)  # warm both paths
            refused = fallbacks(url, 2 * args.rounds + 1)
            if args.fallbacks_only:
                report["engines"][engine] = {"fallbacks": refused}
                print(json.dumps(refused, indent=1), flush=True)
                continue
            rows = compare(url, args.rounds)
        finally:
            stop(process)
        exports = []
        long = long_pdf(args.pages)
        for fields in ({}, {"outputFormats": ["docx"]}):
            process, url = start([*command, *flags], {}, work / f"server-{engine}-long.log")
            try:
                seconds, pages, size = stream(url, long, **fields)
                exports.append(
                    {
                        "export": "docx" if fields else "none",
                        "pages": pages,
                        "seconds": round(seconds, 1),
                        "answer_mib": round(size / 2**20, 1),
                        "worker_peak_rss_mib": peak_rss_mib(process.pid),
                    }
                )
            finally:
                stop(process)
        report["engines"][engine] = {"compare": rows, "fallbacks": refused, "long_document": exports}
        print(json.dumps(report["engines"][engine], indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.fallbacks_only:  # kept beside the full run's results
        saved = args.out / "text_layer.json"
        full = json.loads(saved.read_text()) if saved.is_file() else {"engines": {}}
        for engine, result in report["engines"].items():
            full["engines"].setdefault(engine, {})["fallbacks"] = result["fallbacks"]
        full["fallbacks_machine"] = report["machine"]
        saved.write_text(json.dumps(full, indent=1))
        return 0
    (args.out / "text_layer.json").write_text(json.dumps(report, indent=1))
    columns = ["document", "path", "seconds_per_page", "time_vs_ocr", "paragraph_cer", "headings_right"]
    print_table(report, "compare", columns)
    print()
    print_table(report, "long_document", ["pages", "export", "seconds", "answer_mib", "worker_peak_rss_mib"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
