"""HTTP load generator for PaddleX-style image classification endpoints.

Closed loop: N clients, each sending its next request when the last one
returns. Open loop: requests start at a fixed rate whatever the latency,
which is how real traffic arrives and how queueing shows. Both report
requests/s, latency percentiles and errors, with a progress line on stderr.

    python benchmarks/loadgen.py --url http://127.0.0.1:8080 --image photo.jpg \\
        --concurrency 1 4 16 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

ROUTE = "/image-classification"


@dataclass
class RunResult:
    mode: str  # "closed" or "open"
    level: float  # concurrency, or requests/s offered
    duration_s: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_batch: float | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


class Progress:
    """One self-overwriting status line on stderr."""

    def __init__(self, label: str, duration_s: float) -> None:
        self.label, self.duration_s = label, duration_s
        self.started = time.monotonic()
        self.done = 0
        self.errors = 0
        self.latencies: list[float] = []

    async def send(self, session: aiohttp.ClientSession, url: str, body: bytes) -> None:
        """One request, counted: its latency if it succeeded, an error if not."""
        latency, ok = await _send(session, url, body)
        if ok:
            self.latencies.append(latency)
            self.done += 1
        else:
            self.errors += 1

    async def run(self) -> None:
        while True:
            elapsed = time.monotonic() - self.started
            rate = self.done / elapsed if elapsed > 0 else 0.0
            bar = "#" * int(20 * min(1.0, elapsed / self.duration_s))
            sys.stderr.write(
                f"\r  {self.label:<22} [{bar:<20}] {elapsed:5.1f}s {self.done:6d} ok {rate:7.1f}/s "
                f"{self.errors} errors"
            )
            sys.stderr.flush()
            await asyncio.sleep(0.5)

    def close(self) -> None:
        sys.stderr.write("\n")


async def _batch_stats(session: aiohttp.ClientSession, url: str) -> tuple[float, float] | None:
    """(sum, count) of pxserve's batch-size histogram (all pipelines), if the server has one."""
    try:
        async with session.get(f"{url}/metrics") as response:
            if response.status != 200:
                return None
            text = await response.text()
    except aiohttp.ClientError:
        return None
    values: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("pxserve_batch_size_sum", "pxserve_batch_size_count"):
            if line.startswith((name + " ", name + "{")):
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    if len(values) != 2:
        return None
    return values["pxserve_batch_size_sum"], values["pxserve_batch_size_count"]


def _result(mode: str, level: float, started: float, latencies: list[float], errors: int) -> RunResult:
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return RunResult(
        mode, level, round(elapsed, 2), len(latencies), errors, len(latencies) / elapsed,
        percentile(ordered, 50), percentile(ordered, 90), percentile(ordered, 99), latencies_ms=ordered,
    )  # fmt: skip


async def _send(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            await response.read()
            ok = response.status == 200
    except aiohttp.ClientError:
        ok = False
    return (time.perf_counter() - started) * 1e3, ok


async def closed_loop(
    url: str, body: bytes, concurrency: int, duration_s: float, warmup_s: float, route: str = ROUTE
) -> RunResult:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=600)
    ) as session:
        stop_warmup = time.monotonic() + warmup_s
        while time.monotonic() < stop_warmup:
            await asyncio.gather(*(_send(session, url + route, body) for _ in range(concurrency)))
        before = await _batch_stats(session, url)
        progress = Progress(f"closed c={concurrency}", duration_s)
        started = time.monotonic()
        deadline = started + duration_s

        async def client() -> None:
            while time.monotonic() < deadline:
                await progress.send(session, url + route, body)

        ticker = asyncio.create_task(progress.run())
        await asyncio.gather(*(client() for _ in range(concurrency)))
        ticker.cancel()
        progress.close()
        result = _result("closed", concurrency, started, progress.latencies, progress.errors)
        result.mean_batch = _mean_batch(before, await _batch_stats(session, url))
        return result


async def open_loop(url: str, body: bytes, rate: float, duration_s: float) -> RunResult:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=600)
    ) as session:
        before = await _batch_stats(session, url)
        progress = Progress(f"open {rate:g}/s", duration_s)
        started = time.monotonic()
        tasks = []

        ticker = asyncio.create_task(progress.run())
        for i in range(int(rate * duration_s)):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(progress.send(session, url + ROUTE, body)))
        await asyncio.gather(*tasks)
        ticker.cancel()
        progress.close()
        result = _result("open", rate, started, progress.latencies, progress.errors)
        result.mean_batch = _mean_batch(before, await _batch_stats(session, url))
        return result


def _mean_batch(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def request_body(image: Path, visualize: bool) -> bytes:
    payload = {"image": base64.b64encode(image.read_bytes()).decode("ascii"), "visualize": visualize}
    return json.dumps(payload).encode()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--visualize", action="store_true")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--rate", type=float, nargs="*", default=[], help="open-loop request rates")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="write results here")
    args = parser.parse_args()
    body = request_body(args.image, args.visualize)
    results = [
        asyncio.run(closed_loop(args.url, body, c, args.duration, args.warmup)) for c in args.concurrency
    ]
    results += [asyncio.run(open_loop(args.url, body, r, args.duration)) for r in args.rate]
    for r in results:
        print(f"{r.mode:6} {r.level:6g}  {r.rps:8.1f} req/s  p50 {r.p50_ms:7.1f}  p90 {r.p90_ms:7.1f}  "
              f"p99 {r.p99_ms:7.1f} ms  errors {r.errors}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
