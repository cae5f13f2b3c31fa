"""Table and seal recognition: pxserve (Paddle and --use_hpip) against PaddleX 3.4.3, one run.

    python benchmarks/documents.py            # about 25 minutes on 2 cores
    python benchmarks/documents.py --quick    # shorter windows, for a smoke check

Inputs (tests/tables.py, tests/seals.py): a table page -- the SI base
units table between paragraphs on an A4-shaped page (1240x1754 PNG) -- and
a seal (480x480 PNG, Chinese text around the ring and under the star).
Settings PaddleX can run with the same models: layout detection and
document preprocessing off, PaddleX's OCR settings (tables: 960 / max;
seals: 736 / min), pxserve's embedded PP-OCRv4 mobile det + rec, SLANet_plus,
and the mobile seal detector (converted to a Paddle program for PaddleX by
benchmarks/paddlex_seal_reference.py; it must have been run once). pxserve
serves both pipelines on one server, PaddleX one pipeline per server (its
basic serving runs one pipeline). pxserve's table page with its default
layout detection on is measured too, as its own row.

Closed loop at concurrency 1 and 4 (and 8 for pxserve); each worker's peak
resident memory (PaddleX: its one process). Results:
benchmarks/results/documents.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import tables  # noqa: E402
from multi_pipeline import MemoryWatch, closed  # noqa: E402
from paddlex_seal_reference import pipeline_config as paddlex_seal_config  # noqa: E402
from paddlex_table_reference import pipeline_config as paddlex_table_config  # noqa: E402
from run import machine, start, stop  # noqa: E402

WORK = HERE / ".cache" / "documents"
PADDLEX_ENV = {
    "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
    "PADDLE_PDX_ENABLE_MKLDNN_BYDEFAULT": "False",  # on, PaddleX 3.4.3 answers 500 on these models
}


def inputs() -> dict[str, bytes]:
    return {
        "table": tables.png(tables.table_page(tables.UNITS)),
        "seal": (ROOT / "tests" / "data" / "seals" / "seal_contract.png").read_bytes(),
    }


def body(data: bytes, **extra: object) -> bytes:
    payload = {"file": base64.b64encode(data).decode(), "fileType": 1, "visualize": False, **extra}
    return json.dumps(payload).encode()


SCENARIOS = {  # name -> (route, input, extra request fields, for PaddleX too)
    "table page": ("/table-recognition", "table", {"useLayoutDetection": False}, True),
    "table page, layout on": ("/table-recognition", "table", {}, False),
    "seal": ("/seal-recognition", "seal", {}, True),
}


def drive(
    url: str, data: dict[str, bytes], levels: list[int], seconds: float, paddlex: str | None
) -> list[dict]:
    runs = []
    for name, (route, which, extra, both) in SCENARIOS.items():
        if paddlex is not None and (not both or not route.endswith(paddlex)):
            continue
        for level in levels:
            result = closed(url, route, body(data[which], **extra), level, seconds, 2.0)
            runs.append({"scenario": name, "concurrency": level, **result})
            print(
                f"  {name} c={level}: {result['rps']:.3f}/s p50 {result['p50_ms'] / 1e3:.2f} s",
                file=sys.stderr,
            )
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="per measurement")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--paddlex-venv", type=Path, default=HERE / ".paddlex-venv")
    parser.add_argument("--seal-det", type=Path, default=Path("/tmp/seal-det"), help="the converted detector")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    seconds = 20.0 if args.quick else args.seconds
    WORK.mkdir(parents=True, exist_ok=True)
    data = inputs()
    report: dict = {"machine": machine(), "seconds": seconds, "servers": []}
    for engine, flags in (("paddle", []), ("onnxruntime", ["--use_hpip"])):
        print(f"pxserve ({engine})", file=sys.stderr)
        command = [
            sys.executable,
            "-m",
            "pxserve",
            "--serve",
            "--host",
            "127.0.0.1",
            "--device",
            "cpu",
            *flags,
        ]
        command += ["--pipeline", "table_recognition", "--pipeline", "seal_recognition"]
        process, url = start(command, {"PXSERVE_LOG_LEVEL": "WARNING"}, WORK / f"pxserve-{engine}.log")
        watch = MemoryWatch(process.pid)
        try:
            runs = drive(url, data, [1, 4, 8], seconds, None)
        finally:
            memory = watch.stop()
            stop(process)
        report["servers"].append({"system": f"pxserve {engine}", "runs": runs, "memory": memory})
    paddlex = args.paddlex_venv / "bin" / "paddlex"
    from pxserve.shared.cache import cache_root

    models = cache_root() / "models"
    for pipeline, config in (
        ("table-recognition", paddlex_table_config(models)),
        ("seal-recognition", paddlex_seal_config(models, args.seal_det)),
    ):
        print(f"PaddleX 3.4.3 {pipeline} (oneDNN off)", file=sys.stderr)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=WORK, delete=False) as stream:
            yaml.safe_dump(config, stream)
        command = [str(paddlex), "--serve", "--pipeline", stream.name, "--host", "127.0.0.1"]
        env = {**PADDLEX_ENV, "PADDLE_PDX_CACHE_HOME": str(WORK / "paddlex")}
        process, url = start(command, env, WORK / f"paddlex-{pipeline}.log")
        watch = MemoryWatch(process.pid)
        try:
            runs = drive(url, data, [1, 4], seconds, pipeline)
        finally:
            memory = watch.stop()
            stop(process)
        report["servers"].append({"system": f"PaddleX 3.4.3 {pipeline}", "runs": runs, "memory": memory})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "documents.json").write_text(json.dumps(report, indent=1))
    print(table(report))
    return 0


def table(report: dict) -> str:
    lines = [
        "| system | scenario | c | pages/s | p50 s | p99 s | errors | peak worker RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server in report["servers"]:
        for run in server["runs"]:
            lines.append(
                f"| {server['system']} | {run['scenario']} | {run['concurrency']} | {run['rps']:.3f} "
                f"| {run['p50_ms'] / 1e3:.2f} | {run['p99_ms'] / 1e3:.2f} | {run['errors']} "
                f"| {server['memory']['peak_mib']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
