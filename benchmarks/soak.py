"""Soak: minutes of mixed OCR traffic against one server, as weeks of use would send it.

    python benchmarks/soak.py --minutes 30                 # pxserve, Paddle engine
    python benchmarks/soak.py --minutes 30 --use_hpip      # pxserve, ONNX Runtime
    python benchmarks/soak.py --minutes 10 --paddlex       # PaddleX 3.4.3 on the same documents
    python benchmarks/soak.py --plot                       # results/soak_rss.png from the JSON files

Traffic, all at once (``pxserve --serve --pipeline OCR``, default config):

* documents, one after another: a 10-page Letter PDF (Debian's shared-mime-info
  specification), the first 10 A4 pages of Debian's libtasn1 manual, and a 3-page A3
  PDF rendered from the former;
* photos (three text photos from tests/data/ocr) with a bad input every fifth
  request (noise, a truncated PDF, text that is not Base64): each must be a 4xx;
* every minute, a quiet moment: the other clients pause, the server drains, a photo
  is timed on the idle server, then four clients send the 10-page PDF and give up
  after 2 s, and a photo sent at once must come back within the idle photo's time
  plus one page's (a 1-page PDF timed on the idle server at the start);
* at a third of the run, the worker with the most memory is SIGKILLed.

Every 2 s each worker's resident memory is read from /proc. Results go to
benchmarks/results/soak-<system>.json: status counts, 5xx, p50/p99 per kind,
restarts, watchdog kills, kernel kills, RSS over time and its growth over the
second half. PaddleX (``--paddlex``; benchmarks/paddlex_setup.sh) gets the same
documents and photos one at a time, as it serves them, with no faults injected.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import re
import signal
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import machine, start, stop  # noqa: E402

DOCS = Path("/usr/share/doc")
LETTER_PDF = DOCS / "shared-mime-info" / "shared-mime-info-spec.pdf"
A4_PDF = DOCS / "libtasn1-doc" / "libtasn1.pdf"
PHOTOS = [
    HERE.parent / "tests" / "data" / "ocr" / name for name in ("page_region.jpg", "half_upside_down.jpg")
]
RESULTS = HERE / "results"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def a3_pdf() -> bytes:
    """Three pages of the Letter PDF, drawn on A3 paper (1684x2382 px once the server renders them)."""
    import pypdfium2
    from PIL import Image

    document = pypdfium2.PdfDocument(str(LETTER_PDF))
    pages = []
    for index in (1, 2, 3):
        rendered = document[index].render(scale=200 / 72).to_pil().convert("RGB")
        pages.append(rendered.resize((2339, 3308), Image.Resampling.BICUBIC))  # A3 at 200 dpi
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:], resolution=200)
    return buffer.getvalue()


def inputs() -> dict[str, dict]:
    """Request bodies by kind; bad ones carry the status range they must get."""
    letter = LETTER_PDF.read_bytes()
    documents = {"letter-10p": letter, "a4-10p": A4_PDF.read_bytes(), "a3-3p": a3_pdf()}
    noise = os.urandom(200_000)
    return {
        "documents": {k: {"file": b64(v), "fileType": 0} for k, v in documents.items()},
        "photos": {p.stem: {"file": b64(p.read_bytes()), "fileType": 1} for p in PHOTOS},
        "bad": {
            "noise": {"file": b64(noise), "fileType": 1},
            "truncated-pdf": {"file": b64(letter[: len(letter) // 3]), "fileType": 0},
            "not-base64": {"file": "this is not base64 at all!", "fileType": 1},
        },
        "letter": {"file": b64(letter), "fileType": 0},
    }


class Soak:
    def __init__(self, url: str, server_pid: int, minutes: float, faults: bool) -> None:
        self.url = url
        self.server_pid = server_pid
        self.started = time.monotonic()
        self.until = self.started + minutes * 60
        self.faults = faults
        self.inputs = inputs()
        self.records: list[dict] = []  # kind, name, status, seconds, t
        self.rss: list[dict] = []  # t, pid, rss_mb
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.open = threading.Event()  # cleared during a quiet moment: the other clients wait
        self.open.set()
        self.quiet: list[dict] = []  # per quiet moment: idle photo, photo after the abandon
        self.page_s: float | None = None

    def now(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def running(self) -> bool:
        return time.monotonic() < self.until

    def post(self, kind: str, name: str, payload: dict, timeout: float = 900, gated: bool = True) -> float:
        if gated:
            self.open.wait()
        began = time.monotonic()
        try:
            response = requests.post(f"{self.url}/ocr", json=payload, timeout=timeout)
            status = response.status_code
            pages = len(response.json().get("result", {}).get("ocrResults") or []) if status == 200 else 0
        except requests.RequestException as exc:
            status, pages = f"client error: {type(exc).__name__}", 0
        record = {"kind": kind, "name": name, "status": status, "pages": pages,
                  "seconds": round(time.monotonic() - began, 3), "t": self.now()}  # fmt: skip
        with self.lock:
            self.records.append(record)
        return record["seconds"] if status == 200 else float("nan")

    # -- the client loops ------------------------------------------------------
    def documents(self) -> None:
        while self.running():
            for name, payload in self.inputs["documents"].items():
                if self.running():
                    self.post("document", name, payload)

    def photos(self) -> None:
        bad = list(self.inputs["bad"].items())
        count = 0
        while self.running():
            for name, payload in self.inputs["photos"].items():
                self.post("photo", name, payload)
                count += 1
                if self.faults and count % 5 == 0:
                    bad_name, bad_payload = bad[(count // 5) % len(bad)]
                    self.post("bad", bad_name, bad_payload)

    def abandoners(self) -> None:
        body = json.dumps(self.inputs["letter"]).encode()
        photo = next(iter(self.inputs["photos"].values()))
        while self.running():
            time.sleep(min(60.0, max(self.until - time.monotonic(), 0)))  # pacing, not synchronisation
            if not self.running():
                return
            self.open.clear()
            try:
                self.wait_idle()
                idle = self.post_now("idle photo", photo)
                sockets = [self._send_and_keep(body) for _ in range(4)]
                time.sleep(2.0)  # the clients' timeout
                for sock in sockets:
                    sock.close()
                after = self.post_now("photo after abandon", photo)
                self.quiet.append({"t": self.now(), "idle_photo_s": idle, "photo_after_abandon_s": after})
            finally:
                self.open.set()

    def post_now(self, kind: str, payload: dict) -> float:
        """Time one request while the other clients wait."""
        return self.post(kind, "page_region", payload, gated=False)

    def wait_idle(self, deadline_s: float = 900) -> None:
        """Until the server has nothing admitted (the other clients' last requests done)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            text = requests.get(f"{self.url}/metrics", timeout=10).text
            depths = re.findall(r"^pxserve_queue_depth(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
            if depths and all(float(d) == 0 for d in depths):  # one per pipeline
                return
            time.sleep(0.5)  # polling interval

    def time_one_page(self) -> None:
        """One page's time on the idle server, before the traffic starts."""
        import pypdfium2

        source = pypdfium2.PdfDocument(str(LETTER_PDF))
        single = pypdfium2.PdfDocument.new()
        single.import_pages(source, [1])
        buffer = io.BytesIO()
        single.save(buffer)
        payload = {"file": b64(buffer.getvalue()), "fileType": 0}
        self.post("one page, idle", "letter page 2", payload)  # warm the shapes once
        self.page_s = self.post("one page, idle", "letter page 2", payload)

    def _send_and_keep(self, body: bytes) -> socket.socket:
        host, port = self.url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=30)
        head = (
            f"POST /ocr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        )
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        return sock

    def chaos(self) -> None:
        time.sleep((self.until - time.monotonic()) / 3)
        self.open.wait()  # not during a quiet moment
        workers = worker_rss(self.server_pid)
        if workers and self.running():
            victim = max(workers, key=workers.get)
            os.kill(victim, signal.SIGKILL)
            self.events.append({"t": self.now(), "event": f"SIGKILL worker pid {victim}"})

    def sample(self) -> None:
        while self.running():
            for pid, rss in worker_rss(self.server_pid).items():
                self.rss.append({"t": self.now(), "pid": pid, "rss_mb": round(rss / 2**20)})
            time.sleep(2.0)  # the sampling period

    def run(self, paddlex: bool) -> None:
        self.time_one_page()
        loops = [self.documents, self.photos, self.sample]
        if not paddlex:
            loops += [self.abandoners] + ([self.chaos] if self.faults else [])
        threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def worker_rss(server_pid: int) -> dict[int, int]:
    """Resident bytes of the server's worker processes (or of the server itself, when it has none)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != server_pid:
                continue
            if b"spawn_main" not in (entry / "cmdline").read_bytes():
                continue
            found[int(entry.name)] = int((entry / "statm").read_text().split()[1]) * os.sysconf(
                "SC_PAGE_SIZE"
            )
        except (OSError, ValueError, IndexError):
            continue
    if not found:  # PaddleX: one process does everything
        with contextlib.suppress(OSError):
            pages = int(Path(f"/proc/{server_pid}/statm").read_text().split()[1])
            found[server_pid] = pages * os.sysconf("SC_PAGE_SIZE")
    return found


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def summarize(soak: Soak, log_text: str, metrics_text: str) -> dict:
    records = soak.records
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    by_kind = {}
    for kind in sorted({r["kind"] for r in records}):
        ok = [r["seconds"] for r in records if r["kind"] == kind and r["status"] == 200]
        by_kind[kind] = {"count": sum(r["kind"] == kind for r in records), "ok": len(ok),
                         "p50_s": percentile(ok, 0.5), "p99_s": percentile(ok, 0.99)}  # fmt: skip
    bad = [r for r in records if r["kind"] == "bad"]
    pages = [r["seconds"] / r["pages"] for r in records if r["kind"] == "document" and r["pages"]]
    horizon = max((s["t"] for s in soak.rss), default=0)
    half = [s for s in soak.rss if s["t"] >= horizon / 2]
    third, fourth = (
        [s for s in half if s["t"] < horizon * 0.75],
        [s for s in half if s["t"] >= horizon * 0.75],
    )

    def metric(name: str) -> float:
        found = re.search(rf"^{name} ([0-9.e+-]+)$", metrics_text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    steady = [s["rss_mb"] for s in half]
    growth = (
        statistics.median(s["rss_mb"] for s in fourth) / statistics.median(s["rss_mb"] for s in third) - 1
        if third and fourth else None
    )  # fmt: skip
    quiet = soak.quiet
    within = [q for q in quiet if q["photo_after_abandon_s"] <= q["idle_photo_s"] + (soak.page_s or 0)]
    return {
        "requests": len(records),
        "statuses": statuses,
        "5xx": sum(isinstance(r["status"], int) and r["status"] >= 500 for r in records),
        "client_errors": sum(isinstance(r["status"], str) for r in records),
        "bad_inputs_not_4xx": sum(
            not (isinstance(r["status"], int) and 400 <= r["status"] < 500) for r in bad
        ),
        "by_kind": by_kind,
        "seconds_per_page_p50": percentile(pages, 0.5),
        "one_page_idle_s": soak.page_s,
        "quiet_moments": quiet,
        "photo_after_abandon_within_budget": f"{len(within)} of {len(quiet)}",
        "worker_restarts": metric("pxserve_worker_restarts_total"),
        "worker_recycles": metric("pxserve_worker_recycles_total"),
        "tasks_dropped": metric("pxserve_tasks_dropped_total"),
        "watchdog_kills": log_text.count("killing it"),
        "workers_lost": len(re.findall(r"worker \d+ \([^)]*\) exited \(code", log_text)),
        "kernel_kills": len(re.findall(r"worker \d+ \([^)]*\) exited \(code -9\)", log_text))
        - len(soak.events)  # SIGKILLed by this benchmark
        - log_text.count("killing it"),  # by the watchdog; the rest: the kernel's OOM killer
        "events": soak.events,
        "rss_mb": {
            "max": max((s["rss_mb"] for s in soak.rss), default=None),
            "steady_median": statistics.median(steady) if steady else None,
            "steady_max": max(steady, default=None),
            "growth_over_second_half": round(growth, 3) if growth is not None else None,
        },
        "rss_samples": soak.rss,
    }


def latest_reports() -> list[dict]:
    """The latest run of each system (results/soak-<engine>.json; other soak files are kept runs)."""
    paths = [RESULTS / f"soak-{engine}.json" for engine in ("onnxruntime", "paddle", "paddlex")]
    return [json.loads(path.read_text()) for path in paths if path.exists()]


def plot(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5))
    for report in latest_reports():
        samples = report["summary"]["rss_samples"]
        for index, pid in enumerate(sorted({s["pid"] for s in samples})):
            mine = [s for s in samples if s["pid"] == pid]
            color = {"paddle": "tab:blue", "onnxruntime": "tab:orange"}.get(report["engine"], "tab:gray")
            axis.plot([s["t"] / 60 for s in mine], [s["rss_mb"] for s in mine], lw=1, color=color,
                      label=report["system"] if index == 0 else None)  # fmt: skip
    axis.axhline(1536, color="tab:red", ls="--", lw=0.8, label="target: 1.5 GB")
    axis.set_xlabel("minutes")
    axis.set_ylabel("resident memory per worker (MB)")
    axis.set_title("OCR soak: each worker's RSS over time (2 cores, 24 GB)")
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


def table() -> str:
    """The manual's table, from the latest run of each system."""
    header = [
        "system", "minutes", "requests", "5xx", "bad inputs not 4xx", "watchdog / kernel kills",
        "restarts (SIGKILL)", "recycles", "tasks dropped", "photo p50 / p99",
        "photo after 4 abandoned PDFs: p50 (idle photo p50 + one page), within budget", "s per page p50",
        "worker RSS: steady median / steady max / max", "growth, 2nd half",
    ]  # fmt: skip
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for report in latest_reports():
        s = report["summary"]
        photo = s["by_kind"].get("photo", {})
        after = s["by_kind"].get("photo after abandon", {})
        idle = s["by_kind"].get("idle photo", {})
        rss = s["rss_mb"]
        growth = rss["growth_over_second_half"]
        cells = [
            report["system"], f"{report['minutes']:g}", s["requests"], s["5xx"], s["bad_inputs_not_4xx"],
            f"{s['watchdog_kills']} / {max(s['kernel_kills'], 0)}", f"{s['worker_restarts']:g}",
            f"{s['worker_recycles']:g}", f"{s['tasks_dropped']:g}",
            f"{photo.get('p50_s')} / {photo.get('p99_s')} s",
            f"{after.get('p50_s')} s ({idle.get('p50_s')} + {s['one_page_idle_s']} s), "
            f"{s['photo_after_abandon_within_budget']}",
            s["seconds_per_page_p50"], f"{rss['steady_median']:g} / {rss['steady_max']} / {rss['max']} MB",
            "-" if growth is None else f"{growth:+.1%}",
        ]  # fmt: skip
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--use_hpip", action="store_true", help="serve with ONNX Runtime")
    parser.add_argument("--paddlex", action="store_true", help="soak PaddleX 3.4.3 instead (no faults)")
    parser.add_argument("--paddlex-venv", type=Path, default=HERE / ".paddlex-venv")
    parser.add_argument("--work", type=Path, default=HERE / ".cache" / "soak")
    parser.add_argument(
        "--plot", action="store_true", help="only draw results/soak_rss.png and print the table"
    )
    args = parser.parse_args()
    if args.plot:
        plot(RESULTS / "soak_rss.png")
        print(table())
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    if args.paddlex:
        from ocr import paddlex_config

        from pxserve.shared.cache import cache_root

        system, engine = "PaddleX 3.4.3", "paddlex"
        env = {"PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True", "PADDLE_PDX_ENABLE_MKLDNN_BYDEFAULT": "False",
               "PADDLE_PDX_CACHE_HOME": str(args.work / "paddlex")}  # fmt: skip
        config = paddlex_config(args.work, cache_root() / "models")
        command = [str(args.paddlex_venv / "bin" / "paddlex"), "--serve", "--pipeline", str(config),
                   "--host", "127.0.0.1"]  # fmt: skip
    else:
        engine = "onnxruntime" if args.use_hpip else "paddle"
        system = f"pxserve {engine}"
        env = {}
        command = [
            sys.executable,
            "-m",
            "pxserve",
            "--serve",
            "--pipeline",
            "OCR_PP-OCRv4",
            "--host",
            "127.0.0.1",
        ]
        command += ["--use_hpip"] if args.use_hpip else []
    log = args.work / f"soak-{engine}.log"
    print(f"{system}: starting ({log})", file=sys.stderr)
    process, url = start(command, env, log)
    soak = Soak(url, process.pid, args.minutes, faults=not args.paddlex)
    try:
        soak.run(paddlex=args.paddlex)
        metrics_text = "" if args.paddlex else requests.get(f"{url}/metrics", timeout=10).text
    finally:
        stop(process)
    summary = summarize(soak, log.read_text(errors="replace"), metrics_text)
    report = {
        "system": system,
        "engine": engine,
        "minutes": args.minutes,
        "machine": machine(),
        "summary": summary,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"soak-{engine}.json").write_text(json.dumps(report, indent=1))
    printable = {k: v for k, v in summary.items() if k != "rss_samples"}
    print(json.dumps({"system": system, **printable}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
