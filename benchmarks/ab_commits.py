"""A/B of two commits: both served side by side in one run, each measurement alternating between them.

    python benchmarks/ab_commits.py --old bf51cd9 --suite losses     # about 25 minutes on 2 cores
    python benchmarks/ab_commits.py --old HEAD~3 --suite idle        # about 45 minutes
    python benchmarks/ab_commits.py --old HEAD~1 --suite idle --only "seal" --rounds 1

Machines here drift by 2x between runs, so a speed claim is only ever made
from one run of this script: ``--old`` (any git revision, checked out as a
worktree and imported through a PYTHONPATH shim, benchmarks/worktrees.py)
and ``--new`` (the working tree, or a revision) each get a server per engine
and pipeline, default settings (on 2 cores: two workers of one thread). Only
one server is driven at a time; each round measures every scenario on both,
in alternating order. Per scenario and side: the median over rounds of the
window's p50 (latency), its rate (throughput), or a whole document's time,
and the peak resident memory (VmHWM) of the servers' workers.

Suites (the scenarios of issues "Run for days" and "Quiet-machine latency"):

* ``losses``: an A4 page photo (benchmarks/ocr.py's, 1271x1644) at concurrency
  1 and 4 on both engines; classification of a 12-MP photo at concurrency 8
  with ONNX Runtime.
* ``idle``: the page at concurrency 1, 4 and 8, a 10-page PDF alone, a table
  page and a seal at 1 and 4, on both engines.

OCR is served with PP-OCRv4 on both sides (``OCR_PP-OCRv4`` where the commit
has it; before PP-OCRv5 became the default, ``OCR`` was v4). Results:
benchmarks/results/ab_<suite>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import loadgen  # noqa: E402
from ocr import OFF, SOURCE_PDF, document_page  # noqa: E402
from ocr_versions import peak_rss_mib  # noqa: E402
from run import machine, phone_photo, start, stop  # noqa: E402
from worktrees import importable  # noqa: E402

WORK = HERE / ".cache" / "ab_commits"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ocr_page() -> bytes:
    page = document_page(WORK / "a4-150dpi.jpg").read_bytes()
    return json.dumps({"file": _b64(page), "fileType": 1, **OFF}).encode()


def ocr_pdf() -> bytes:
    return json.dumps({"file": _b64(SOURCE_PDF.read_bytes()), "fileType": 0, **OFF}).encode()


def table_page() -> bytes:
    import tables

    data = tables.png(tables.table_page(tables.UNITS))
    return json.dumps({"file": _b64(data), "fileType": 1, "visualize": False}).encode()


def seal() -> bytes:
    data = (ROOT / "tests" / "data" / "seals" / "seal_contract.png").read_bytes()
    return json.dumps({"file": _b64(data), "fileType": 1, "visualize": False}).encode()


def photo() -> bytes:
    return loadgen.request_body(phone_photo(WORK / "phone-12mp.jpg"), visualize=False)


@dataclass(frozen=True)
class Scenario:
    name: str
    pipelines: tuple[str, ...]  # config names to try in turn: the first the commit ships
    route: str
    body: Callable[[], bytes]
    concurrency: int
    measure: str  # "p50" (seconds, lower is better), "rate" (per second, higher), "once" (seconds)
    engines: tuple[str, ...] = ("paddle", "onnxruntime")


OCR = ("OCR_PP-OCRv4", "OCR")
SUITES: dict[str, list[Scenario]] = {
    "losses": [
        Scenario("OCR page", OCR, "/ocr", ocr_page, 1, "p50"),
        Scenario("OCR page", OCR, "/ocr", ocr_page, 4, "rate"),
        Scenario(
            "12-MP photo",
            ("image_classification",),
            "/image-classification",
            photo,
            8,
            "rate",
            engines=("onnxruntime",),
        ),
    ],
    "idle": [
        Scenario("OCR page", OCR, "/ocr", ocr_page, 1, "p50"),
        Scenario("OCR page", OCR, "/ocr", ocr_page, 4, "rate"),
        Scenario("OCR page", OCR, "/ocr", ocr_page, 8, "rate"),
        Scenario("10-page PDF", OCR, "/ocr", ocr_pdf, 1, "once"),
        Scenario("table page", ("table_recognition",), "/table-recognition", table_page, 1, "p50"),
        Scenario("table page", ("table_recognition",), "/table-recognition", table_page, 4, "rate"),
        Scenario("seal", ("seal_recognition",), "/seal-recognition", seal, 1, "p50"),
        Scenario("seal", ("seal_recognition",), "/seal-recognition", seal, 4, "rate"),
    ],
}


class Side:
    """One commit: where it imports from, and its servers (one per engine and pipeline)."""

    def __init__(self, label: str, env: dict[str, str], configs: Path) -> None:
        self.label, self.env, self.configs = label, env, configs
        self.folder = WORK / label.split()[0]
        self.folder.mkdir(parents=True, exist_ok=True)  # its own cwd: the checkout must not shadow the shim

    def pipeline(self, names: tuple[str, ...]) -> str:
        return next(n for n in names if (self.configs / f"{n}.yaml").is_file())

    def serve(self, engine: str, pipeline: str) -> tuple[subprocess.Popen, str]:
        command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", pipeline]
        command += ["--host", "127.0.0.1", "--device", "cpu"]
        command += ["--use_hpip"] if engine == "onnxruntime" else []
        log = self.folder / f"{engine}-{pipeline}.log"
        return start(command, {**self.env, "PXSERVE_LOG_LEVEL": "WARNING"}, log)


def measure(url: str, scenario: Scenario, body: bytes, seconds: float) -> float:
    if scenario.measure == "once":
        started = time.perf_counter()
        response = requests.post(url + scenario.route, data=body, timeout=1800,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
        response.raise_for_status()
        return time.perf_counter() - started
    result = asyncio.run(
        loadgen.closed_loop(url, body, scenario.concurrency, seconds, 0, route=scenario.route)
    )
    if result.errors:
        raise RuntimeError(f"{scenario.name}: {result.errors} errors at {url}")
    return result.p50_ms / 1e3 if scenario.measure == "p50" else result.rps


def run_group(
    sides: list[Side], engine: str, group: list[Scenario], rounds: int, seconds: float
) -> list[dict]:
    """Serve one pipeline on one engine from every side, and measure its scenarios in alternation."""
    bodies = {id(s): s.body() for s in group}
    servers = [side.serve(engine, side.pipeline(group[0].pipelines)) for side in sides]
    found: dict[tuple[int, int], list[float]] = {}
    try:
        for _, url in servers:  # warm every shape
            for scenario in group:
                requests.post(url + scenario.route, data=bodies[id(scenario)], timeout=1800,
                              headers={"Content-Type": "application/json"}).raise_for_status()  # fmt: skip
        for number in range(rounds):
            for index, scenario in enumerate(group):
                order = list(range(len(sides)))
                if (number + index) % 2:
                    order.reverse()
                for side in order:
                    value = measure(servers[side][1], scenario, bodies[id(scenario)], seconds)
                    found.setdefault((index, side), []).append(value)
                    print(f"  round {number + 1} {engine} {scenario.name} c={scenario.concurrency} "
                          f"{sides[side].label}: {value:.3f}", file=sys.stderr, flush=True)  # fmt: skip
        peaks = [round(max(peak_rss_mib(process.pid), default=0)) for process, _ in servers]
    finally:
        for process, _ in servers:
            stop(process)
    rows = []
    for index, scenario in enumerate(group):
        values = [statistics.median(found[(index, side)]) for side in range(len(sides))]
        rows.append({
            "scenario": scenario.name, "concurrency": scenario.concurrency, "engine": engine,
            "measure": scenario.measure, "values": [round(v, 4) for v in values],
            "raw": [found[(index, side)] for side in range(len(sides))],
            "new_over_old": round(values[1] / values[0], 3), "peak_worker_mib": peaks,
        })  # fmt: skip
    return rows


def table(report: dict) -> str:
    old, new = report["sides"]
    units = {"p50": "s (p50)", "rate": "/s", "once": "s"}
    lines = [
        f"| scenario | engine | c | {old} | {new} | new / old | peak worker RSS, old / new |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        unit = units[row["measure"]]
        a, b = row["values"]
        lines.append(
            f"| {row['scenario']} | {row['engine']} | {row['concurrency']} | {a:.3f} {unit} | {b:.3f} {unit} "
            f"| {row['new_over_old']:.3f} | {row['peak_worker_mib'][0]} / {row['peak_worker_mib'][1]} MiB |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="the older commit (any git revision)")
    parser.add_argument("--new", help="a newer revision (default: this working tree, as installed)")
    parser.add_argument("--suite", choices=sorted(SUITES), default="losses")
    parser.add_argument("--only", help="only scenarios whose name contains this")
    parser.add_argument("--engine", choices=["paddle", "onnxruntime"], help="only this engine")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=40.0, help="each window")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    commit, shim = importable(args.old, WORK)
    sides = [Side(f"old ({commit})", {"PYTHONPATH": str(shim)}, shim / "pxserve" / "configs")]
    if args.new:
        commit, shim = importable(args.new, WORK)
        sides.append(Side(f"new ({commit})", {"PYTHONPATH": str(shim)}, shim / "pxserve" / "configs"))
    else:
        sides.append(Side("new (working tree)", {}, ROOT / "configs"))
    scenarios = [s for s in SUITES[args.suite] if not args.only or args.only in s.name]
    groups: dict[tuple[str, tuple[str, ...]], list[Scenario]] = {}
    for scenario in scenarios:
        for engine in scenario.engines:
            if args.engine in (None, engine):
                groups.setdefault((engine, scenario.pipelines), []).append(scenario)
    rows = []
    for (engine, _), group in groups.items():
        rows += run_group(sides, engine, group, args.rounds, args.seconds)
    report = {
        "machine": machine(), "suite": args.suite, "rounds": args.rounds, "seconds": args.seconds,
        "sides": [s.label for s in sides], "cpu_count": os.cpu_count(), "rows": rows,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"ab_{args.suite}" + (f"_{args.only.replace(' ', '_')}" if args.only else "")
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1))
    print(table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
