"""Memory at rest: what a worker holds 2 s after a load window, beside the speed it buys.

    python benchmarks/memory_at_rest.py --side 539d86e --side 0e4d4da --side .     # about 25 minutes
    python benchmarks/memory_at_rest.py --side 0e4d4da --side . --side .:max_kept_mb=0 --engine paddle

Every side (``REVISION`` or ``.`` for the working tree, then ``:key=value,...`` for
Serving settings written into its config) gets a server per engine and pipeline, all
up at once; only one is driven at a time, and each round measures every scenario on
every side in alternating order (machines here drift by 2x between runs, so claims
are made only within one run). Default settings otherwise: on 2 cores, two workers
of one thread.

Per side and engine:

* OCR (PP-OCRv4, as the issue's figures were measured) on benchmarks/ocr.py's A4 page
  photo: p50 at concurrency 1 and pages/s at 4, each window followed by 2 s of quiet and
  each worker's resident memory (``rest``); the same for a seal at concurrency 1;
* pages whose size changes every request (A4, A3, a thin strip, a 4000x4000 photo) at
  concurrency 1 and 8, then the memory at rest;
* a burst of 200 tiny images at concurrency 8, then how long until every worker is back
  within 5% (and 16 MiB) of its memory at rest before the burst (``return_s``, polled
  every 0.1 s for 10 s).

Results: benchmarks/results/memory_at_rest.json and a Markdown table on stdout.

``--pieces`` measures instead, in one process per engine built as a worker builds its
models (every model at 1 and 2 threads, as on 2 cores), what each piece a worker keeps
weighs: resident memory after loading, after three A4 pages, then after each release
in turn (the heap trimmed, the engines' kept memory given back, the wider sessions
dropped), and the time of a page after it all (results/memory_pieces.json).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from ab_commits import WORK, ocr_page, seal  # noqa: E402
from run import machine, start, stop  # noqa: E402
from soak import worker_rss  # noqa: E402
from worktrees import importable  # noqa: E402

OCR = ("OCR_PP-OCRv4", "OCR")
REST_S = 2.0
MiB = 1 << 20


@dataclass
class Side:
    """A revision (or the working tree) with Serving settings of its own, and its servers."""

    spec: str
    label: str = ""
    env: dict[str, str] = field(default_factory=dict)
    configs: Path = ROOT / "configs"
    settings: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        revision, _, extra = self.spec.partition(":")
        for pair in filter(None, extra.split(",")):
            key, _, value = pair.partition("=")
            self.settings[key] = yaml.safe_load(value)
        if revision != ".":
            commit, shim = importable(revision, WORK)
            self.env, self.configs = {"PYTHONPATH": str(shim)}, shim / "pxserve" / "configs"
            self.label = commit
        else:
            self.label = "working tree"
        if extra:
            self.label += f" ({extra})"
        self.folder = WORK / "memory_at_rest" / self.spec.replace("/", "_").replace(":", "_")
        self.folder.mkdir(parents=True, exist_ok=True)

    def config(self, names: tuple[str, ...]) -> Path:
        """The first of ``names`` this side ships, with its settings written in."""
        name = next(n for n in names if (self.configs / f"{n}.yaml").is_file())
        data = yaml.safe_load((self.configs / f"{name}.yaml").read_text())
        data.setdefault("Serving", {}).update(self.settings)
        target = self.folder / f"{name}.yaml"
        target.write_text(yaml.safe_dump(data))
        return target

    def serve(self, engine: str, names: tuple[str, ...]) -> tuple[object, str]:
        command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", str(self.config(names))]
        command += ["--host", "127.0.0.1", "--device", "cpu"] + (
            ["--use_hpip"] if engine == "onnxruntime" else []
        )
        log = self.folder / f"{engine}-{names[0]}.log"
        return start(command, {**self.env, "PXSERVE_LOG_LEVEL": "WARNING"}, log)


# -- load ----------------------------------------------------------------------------------------
async def _closed_loop(
    url: str, bodies: list[bytes], concurrency: int, seconds: float
) -> tuple[float, float]:
    """p50 latency (s) and requests/s of ``concurrency`` clients sending ``bodies`` in turn."""
    latencies: list[float] = []
    sent = 0
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=900)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def client() -> None:
            nonlocal sent
            while time.monotonic() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                started = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{url}: {r.status} {(await r.text())[:200]}")
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return statistics.median(latencies), len(latencies) / elapsed


def load(server: object, url: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """p50 (s), rate (/s) and the median of the workers' memory sampled every 0.5 s meanwhile (MiB)."""
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.extend(round(v / MiB) for v in worker_rss(server.pid).values())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        p50, rate = asyncio.run(_closed_loop(url, bodies, concurrency, seconds))
    finally:
        done.set()
        sampler.join()
    return {"p50": p50, "rate": rate, "during": statistics.median(samples) if samples else None}


def rest_mib(server: object) -> list[int]:
    """Each worker's resident memory after ``REST_S`` of quiet."""
    time.sleep(REST_S)
    return sorted(round(v / MiB) for v in worker_rss(server.pid).values())


def time_to_return(server: object, before: list[int], limit_s: float = 10.0) -> float | None:
    """Seconds until every worker is within 5% (and 16 MiB) of ``before`` again (None: not within limit_s)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        now = sorted(round(v / MiB) for v in worker_rss(server.pid).values())
        if len(now) == len(before) and all(n <= b * 1.05 + 16 for n, b in zip(now, before, strict=True)):
            return round(time.monotonic() - started, 2)
        time.sleep(0.1)
    return None


# -- inputs --------------------------------------------------------------------------------------
def _jpeg_body(image: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return json.dumps(
        {"file": base64.b64encode(buffer.getvalue()).decode(), "fileType": 1, "visualize": False}
    ).encode()


def changing_sizes() -> list[bytes]:
    """A4, A3, a thin strip and a 4000x4000 photo, made from the A4 page photo."""
    from PIL import Image

    page = Image.open(io.BytesIO(base64.b64decode(json.loads(ocr_page())["file"]))).convert("RGB")
    a3 = page.resize((1797, 2325), Image.Resampling.BICUBIC)
    strip = page.crop((0, 200, page.width, 260)).resize((1150, 60), Image.Resampling.BICUBIC)
    photo = page.resize((4000, 4000), Image.Resampling.BICUBIC)
    return [ocr_page(), _jpeg_body(a3), _jpeg_body(strip), _jpeg_body(photo)]


def tiny() -> bytes:
    from PIL import Image

    page = Image.open(io.BytesIO(base64.b64decode(json.loads(ocr_page())["file"]))).convert("RGB")
    return _jpeg_body(page.crop((100, 100, 260, 148)))


# -- the run -------------------------------------------------------------------------------------
def run_engine(sides: list[Side], engine: str, rounds: int, seconds: float, pages_only: bool) -> list[dict]:
    page, seal_body, sizes, small = ocr_page(), seal(), changing_sizes(), tiny()
    rows: dict[tuple[str, int], dict[int, dict[str, list]]] = {}

    def note(scenario: str, concurrency: int, side: int, **values: object) -> None:
        found = rows.setdefault((scenario, concurrency), {}).setdefault(side, {})
        for key, value in values.items():
            found.setdefault(key, []).append(value)

    servers = [side.serve(engine, OCR) for side in sides]
    try:
        for server, url in servers:  # warm every shape
            load(server, url + "/ocr", [page, *sizes], 1, 1)
        for number in range(rounds):
            for index, (concurrency, measure) in enumerate([(1, "p50"), (4, "rate")]):
                order = list(range(len(sides)))[:: -1 if (number + index) % 2 else 1]
                for side in order:
                    server, url = servers[side]
                    found = load(server, url + "/ocr", [page], concurrency, seconds)
                    rest = rest_mib(server)
                    value, during = found[measure], found["during"]
                    note("OCR page", concurrency, side, value=value, during=during, rest=rest)
                    said = f"p50 {found['p50']:.3f} s, {found['rate']:.3f}/s, rest {rest} MiB"
                    print(f"  {engine} round {number + 1} OCR c={concurrency} {sides[side].label}: {said}",
                          file=sys.stderr, flush=True)  # fmt: skip
        for side, (server, url) in enumerate([] if pages_only else servers):
            for concurrency in (1, 8):
                found = load(server, url + "/ocr", sizes, concurrency, seconds)
                note("changing sizes", concurrency, side, value=found["rate"], during=found["during"],
                     rest=rest_mib(server))  # fmt: skip
            before = rest_mib(server)
            asyncio.run(_burst(url + "/ocr", small, 200, 8))
            note("200 tiny images", 8, side, value=time_to_return(server, before), during=None, rest=before)
            print(
                f"  {engine} {sides[side].label}: changing sizes and burst done", file=sys.stderr, flush=True
            )
    finally:
        for server, _ in servers:
            stop(server)
    servers = [] if pages_only else [side.serve(engine, ("seal_recognition",)) for side in sides]
    try:
        for server, url in servers:
            load(server, url + "/seal-recognition", [seal_body], 1, 1)
        for number in range(rounds if servers else 0):
            order = list(range(len(sides)))[:: -1 if number % 2 else 1]
            for side in order:
                server, url = servers[side]
                found = load(server, url + "/seal-recognition", [seal_body], 1, seconds)
                note("seal", 1, side, value=found["p50"], during=found["during"], rest=rest_mib(server))
    finally:
        for server, _ in servers:
            stop(server)
    measures = {"OCR page": {1: "p50", 4: "rate"}, "changing sizes": {1: "rate", 8: "rate"},
                "200 tiny images": {8: "return_s"}, "seal": {1: "p50"}}  # fmt: skip
    out = []
    for (scenario, concurrency), by_side in rows.items():
        values = [by_side[s]["value"] for s in range(len(sides))]
        out.append({
            "engine": engine, "scenario": scenario, "concurrency": concurrency,
            "measure": measures[scenario][concurrency],
            "values": [statistics.median(v) if None not in v else None for v in values],
            "raw": values,
            # the median over rounds of the largest worker's memory at rest
            "rest_mib": [statistics.median(max(r) for r in by_side[s]["rest"]) for s in range(len(sides))],
            "rest_raw": [by_side[s]["rest"] for s in range(len(sides))],
            # the median over rounds of the workers' median memory while the window ran
            "during_mib": [_median(by_side[s]["during"]) for s in range(len(sides))],
        })  # fmt: skip
    return out


def _median(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


async def _burst(url: str, body: bytes, count: int, concurrency: int) -> None:
    """``count`` requests of ``body`` as fast as ``concurrency`` clients can send them."""
    left = count
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()

        await asyncio.gather(*(client() for _ in range(concurrency)))


def table(report: dict) -> str:
    labels = report["sides"]
    units = {"p50": "s (p50)", "rate": "/s", "return_s": "s to rest"}
    head = " | ".join(labels)
    ratios = " | ".join(f"/ {labels[0]}" for _ in labels[1:])
    lines = [f"| engine | scenario | c | {head} | {ratios} | worker RSS at rest / under load, MiB |"]
    lines.append("|" + "---|" * (3 + 2 * len(labels)))
    for row in report["rows"]:
        unit = units[row["measure"]]
        values = [f"{v:.3f} {unit}" if v is not None else "not back" for v in row["values"]]
        first = row["values"][0]
        over = [f"{v / first:.3f}" if v is not None and first else "" for v in row["values"][1:]]
        rest = ", ".join(
            f"{round(r)} / {round(d) if d is not None else '-'}"
            for r, d in zip(row["rest_mib"], row["during_mib"], strict=True)
        )
        lines.append(f"| {row['engine']} | {row['scenario']} | {row['concurrency']} | {' | '.join(values)} | "
                     f"{' | '.join(over)} | {rest} |")  # fmt: skip
    return "\n".join(lines)


# -- the pieces, in-process ---------------------------------------------------------------------
def _resident_mib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS")).split()[1]) // 1024


def pieces(engine: str) -> dict:
    """What each piece an OCR worker keeps weighs (run in a fresh process: ``--pieces-of``)."""
    import dataclasses
    import gc
    import os

    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    sys.path.insert(0, str(ROOT / "tests"))
    from limit import in_process_runner, task_of
    from limit import ocr_page as page_body

    from pxserve.shared.allocator import return_free_heap, return_large_buffers_to_the_os
    from pxserve.workers import backends
    from pxserve.workers.composed_runner import warm_up
    from pxserve.workers.worker import _probe_image

    if engine == "paddle":
        return_large_buffers_to_the_os()  # as a Paddle worker does
    made: list = []
    create = backends.create_backend

    def create_two_counts(model: object, options: backends.BackendOptions) -> object:
        made.append(create(model, dataclasses.replace(options, thread_counts=(1, 2))))
        return made[-1]

    backends.create_backend = create_two_counts
    from limit import complete

    found = {"start": _resident_mib()}
    pipeline, runner = in_process_runner(OCR[0], engine)
    warm_up(runner, _probe_image(), [8, 1])
    found["models loaded and warmed up"] = _resident_mib()
    task = task_of(pipeline, page_body())
    times = []
    for _ in range(3):
        started = time.perf_counter()
        assert complete(runner, task).ok
        times.append(time.perf_counter() - started)
    found["after 3 A4 pages"] = _resident_mib()
    return_free_heap()
    found["heap trimmed"] = _resident_mib()
    started = time.perf_counter()
    for backend in made:
        backend.release()
    found["engines' kept memory given back"] = _resident_mib()
    found["release_ms"] = round((time.perf_counter() - started) * 1e3, 1)
    for backend in made:
        sessions = getattr(backend, "_sessions", None)
        for count in [c for c in sessions or {} if c != min(sessions)]:
            del sessions[count]
    gc.collect()
    return_free_heap()
    found["wider ONNX Runtime sessions dropped"] = _resident_mib()
    started = time.perf_counter()
    assert complete(runner, task).ok
    found["page_s_kept"] = round(statistics.median(times[1:]), 3)
    found["page_s_after_release"] = round(time.perf_counter() - started, 3)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", action="append", default=[], help="REVISION or . [:key=value,...]")
    parser.add_argument("--engine", choices=["paddle", "onnxruntime"], help="only this engine")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=25.0, help="each window")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "memory_at_rest.json")
    parser.add_argument("--pages-only", action="store_true", help="only the A4 page at c=1 and c=4")
    parser.add_argument("--pieces", action="store_true", help="what each piece weighs, in-process")
    parser.add_argument("--pieces-of", choices=["paddle", "onnxruntime"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pieces_of:
        print(json.dumps(pieces(args.pieces_of)))
        return 0
    if args.pieces:
        import subprocess

        report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "engines": {}}
        for engine in ["onnxruntime", "paddle"]:
            command = [sys.executable, __file__, "--pieces-of", engine]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            report["engines"][engine] = json.loads(out.strip().splitlines()[-1])
        (HERE / "results" / "memory_pieces.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report["engines"], indent=1))
        return 0
    if not args.side:
        parser.error("name the sides to compare (--side), or ask for --pieces")
    WORK.mkdir(parents=True, exist_ok=True)
    sides = [Side(spec) for spec in args.side]
    rows = []
    for engine in [args.engine] if args.engine else ["onnxruntime", "paddle"]:
        rows += run_engine(sides, engine, args.rounds, args.seconds, args.pages_only)
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds,
              "seconds": args.seconds, "sides": [s.label for s in sides], "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
