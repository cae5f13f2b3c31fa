"""A/B: an older commit and the working tree served side by side, requests alternating.

    python benchmarks/ab.py --old HEAD~1 [--rounds 2]      # about 10 minutes on 2 cores

Machines here drift by 2x, so a speed claim compares two servers in one run:
the older commit (a ``git worktree``, imported through a PYTHONPATH shim, no
install) and this checkout, each serving PP-StructureV3 with two workers of
one thread, one request at a time, alternating between them. Measured per
server: a page photo's /layout-parsing time at c=1 (median), and for a
30-page PDF streamed as NDJSON the time to its first page and to its last.
Results: benchmarks/results/ab_structure.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import machine, start, stop  # noqa: E402
from structure import first_streamed_page, long_pdf, page_photos, post  # noqa: E402
from worktrees import importable  # noqa: E402


def serve(label: str, env: dict[str, str], work: Path) -> tuple[subprocess.Popen, str]:
    folder = work / label
    folder.mkdir(exist_ok=True)  # its own working directory: the checkout must not shadow the shim
    command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", "PP-StructureV3"]
    command += ["--host", "127.0.0.1", "--device", "cpu"]
    return start(command, env, folder / "server.log")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="the older commit (any git revision)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    work = HERE / ".cache" / "ab"
    work.mkdir(parents=True, exist_ok=True)
    commit, shim = importable(args.old, work)
    pages, pdf = page_photos(), long_pdf(30)
    servers = {
        f"old ({commit})": serve("old", {"PYTHONPATH": str(shim)}, work),
        "new": serve("new", {}, work),
    }
    found: dict[str, dict[str, list[float]]] = {
        name: {"page": [], "first": [], "last": []} for name in servers
    }
    try:
        for _, url in servers.values():  # warm every shape
            for page in pages:
                post(url, "/layout-parsing", page)
        for _ in range(args.rounds):
            for page in pages:
                for name, (_, url) in servers.items():
                    found[name]["page"].append(post(url, "/layout-parsing", page))
            for name, (_, url) in servers.items():
                first, last, _ = first_streamed_page(url, pdf)
                found[name]["first"].append(first)
                found[name]["last"].append(last)
                print(f"{name}: first page {first} s, all {last} s", file=sys.stderr, flush=True)
                time.sleep(1)
    finally:
        for process, _ in servers.values():
            stop(process)
    report = {
        "machine": machine(),
        "rounds": args.rounds,
        "servers": {
            name: {key: round(statistics.median(values), 2) for key, values in runs.items()}
            for name, runs in found.items()
        },
        "raw": found,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ab_structure.json").write_text(json.dumps(report, indent=1))
    print("| server | page p50 c=1 | 30-page stream: first page | all 30 pages |")
    print("|---|---|---|---|")
    for name, row in report["servers"].items():
        print(f"| {name} | {row['page']} s | {row['first']} s | {row['last']} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
