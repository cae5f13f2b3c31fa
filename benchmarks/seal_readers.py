"""Which recognizer reads seals' text better: PP-OCRv5 mobile or PP-OCRv6 small.

    python benchmarks/seal_readers.py        # about 2 minutes on 2 cores

The seal_recognition pipeline as shipped (PaddleX's PP-OCRv4 mobile seal
detector), its SealOCR recognizer set to each reader in turn; both servers
up at once and every seal sent to them in turn. Seals: tests/seals.py's,
drawn with their text known (Chinese company seals over several arcs, and
Latin ones). Measured: character error rate of ring and centre text
together (whitespace ignored), seconds per seal, worker peak RSS.

Results: benchmarks/results/seal_readers.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from importlib import resources
from pathlib import Path

import requests
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import seals  # noqa: E402
from ocr_versions import peak_rss_mib  # noqa: E402
from readers import cer  # noqa: E402
from run import machine, start, stop  # noqa: E402

READERS = {"PP-OCRv5 mobile": "PP-OCRv5_mobile_rec", "PP-OCRv6 small": "PP-OCRv6_small_rec"}
SEALS = [  # ring text, centre text, arc, Chinese
    ("上海市浦江科技有限公司", "合同专用章", 200.0, True),
    ("北京文档服务股份有限公司", "财务专用章", 240.0, True),
    ("广州南方河流监测研究院", "检测专用章", 260.0, True),
    ("杭州西湖水文站", "公章", 180.0, True),
    ("RIVER SURVEY SERVICES LTD", "APPROVED", 240.0, False),
    ("NORTHERN FIELD STATIONS", "RECEIVED", 220.0, False),
]


def config(work: Path, model: str) -> Path:
    data = yaml.safe_load((resources.files("pxserve.configs") / "seal_recognition.yaml").read_text())
    data["SubPipelines"]["SealOCR"]["SubModules"]["TextRecognition"]["model_name"] = model
    data["Serving"] = {**(data.get("Serving") or {}), "visualize": False, "instances_per_device": 1}
    path = work / f"seal-{model}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def read(url: str, image: bytes) -> tuple[float, str]:
    started = time.monotonic()
    response = requests.post(
        f"{url}/seal-recognition", json={"file": base64.b64encode(image).decode()}, timeout=300
    )
    elapsed = time.monotonic() - started
    response.raise_for_status()
    texts = []
    for page in response.json()["result"]["sealRecResults"]:
        for seal in page["prunedResult"]["seal_res_list"]:
            texts += seal["rec_texts"]
    return elapsed, "".join(texts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--flags", nargs="*", default=[], help="server flags, e.g. --use_hpip")
    args = parser.parse_args()
    work = HERE / ".cache" / "seal_readers"
    work.mkdir(parents=True, exist_ok=True)
    images = [seals.png(seals.seal(ring, centre, cjk=cjk, arc=arc)) for ring, centre, arc, cjk in SEALS]
    servers = {}
    try:
        for reader, model in READERS.items():
            command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", str(config(work, model))]
            command += ["--host", "127.0.0.1", *args.flags]
            servers[reader] = start(command, {}, work / f"server-{model}.log")
        for _, url in servers.values():
            read(url, images[0])  # warm
        errors: dict[str, list[float]] = {r: [] for r in servers}
        times: dict[str, list[float]] = {r: [] for r in servers}
        readings: dict[str, list[str]] = {r: [] for r in servers}
        for (ring, centre, _, _), image in zip(SEALS, images, strict=True):
            for reader, (_, url) in servers.items():
                elapsed, text = read(url, image)
                errors[reader].append(cer(text, ring + centre))
                times[reader].append(elapsed)
                readings[reader].append(text)
        runs = [
            {
                "reader": reader,
                "cer_each": errors[reader],
                "cer_mean": round(statistics.mean(errors[reader]), 4),
                "seconds_per_seal": round(statistics.median(times[reader]), 3),
                "readings": readings[reader],
                "worker_peak_rss_mib": peak_rss_mib(process.pid),
            }
            for reader, (process, _) in servers.items()
        ]
    finally:
        for process, _ in servers.values():
            stop(process)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "flags": args.flags, "seals": [s[:2] for s in SEALS], "runs": runs}
    (args.out / "seal_readers.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print("| reader | CER per seal | mean CER | s/seal | worker RSS MiB |")
    print("|---|---|---|---|---|")
    for run in runs:
        each = ", ".join(f"{e:.2f}" for e in run["cer_each"])
        print(f"| {run['reader']} | {each} | {run['cer_mean']} | {run['seconds_per_seal']} "
              f"| {max(run['worker_peak_rss_mib'])} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
