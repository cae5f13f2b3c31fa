"""Load and report for deploy/fleet-test.sh: what clients of a fleet see.

    python3 fleet_load.py load URL IMAGE SECONDS CONCURRENCY OUT.json
    python3 fleet_load.py report OUT.json EVENTS.json
    python3 fleet_load.py jobs BASE_URL PDF COUNT OUT.json      (deploy/fleet-jobs-test.sh)

Standard library only, so it runs with any Python 3 on the host. ``load``
runs closed-loop clients that post the image to URL until SECONDS have
passed and records, per request, when it finished (epoch seconds), its
status, its latency and which backend answered (the balancer's X-Upstream
header). ``report`` prints the numbers around the events the fleet script
recorded (a backend killed, restarted, ready, stopped) and exits non-zero if
a client saw an error or a restarted backend got no traffic back.
``jobs`` submits COUNT jobs of the PDF to PaddleOCR's job API, polls them all
until they finish (any backend may answer), fetches each result and exits
non-zero unless every job is done with every page of the PDF once.
"""

from __future__ import annotations

import base64
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request


def load(url: str, image: str, seconds: str, concurrency: str, out: str) -> int:
    with open(image, "rb") as stream:
        body = json.dumps({"image": base64.b64encode(stream.read()).decode("ascii"), "topk": 1}).encode()
    stop_at = time.monotonic() + float(seconds)
    records: list[dict] = []
    lock = threading.Lock()

    def client() -> None:
        while time.monotonic() < stop_at:
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            sent = time.monotonic()
            upstream, detail = "", ""
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status = response.status
                    upstream = response.headers.get("X-Upstream", "")
                    answer = json.loads(response.read())
                    detail = answer["result"]["categories"][0]["name"]
            except urllib.error.HTTPError as exc:
                status = exc.code
                upstream = exc.headers.get("X-Upstream", "")
                detail = exc.read()[:200].decode("utf-8", "replace")
            except OSError as exc:  # connection refused or reset: no HTTP answer at all
                status, detail = 0, f"{type(exc).__name__}: {exc}"
            done = time.monotonic()
            with lock:
                records.append(
                    {"t": time.time(), "status": status, "latency": done - sent,
                     "upstream": upstream, "detail": detail}
                )  # fmt: skip

    threads = [threading.Thread(target=client) for _ in range(int(concurrency))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(out, "w") as stream:
        json.dump(records, stream)
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def answered_by(record: dict) -> str:
    """The backend that gave the final answer (nginx lists every one it tried)."""
    return record["upstream"].split(",")[-1].strip()


def report(out: str, events_path: str) -> int:
    with open(out) as stream:
        records = sorted(json.load(stream), key=lambda r: r["t"])
    with open(events_path) as stream:
        events: dict[str, float] = json.load(stream)  # name -> epoch seconds
    start = records[0]["t"] - records[0]["latency"]
    span = records[-1]["t"] - start
    ok = [r for r in records if r["status"] == 200]
    failed = [r for r in records if r["status"] != 200]
    latencies = [r["latency"] * 1e3 for r in ok]
    print(f"requests: {len(records)} in {span:.0f} s ({len(records) / span:.1f}/s), {len(ok)} answered 200")
    print(f"client-visible errors: {len(failed)}")
    for r in failed[:10]:
        print(f"  at +{r['t'] - start:.1f} s: status {r['status']} {r['detail'][:120]}")
    print(f"latency ms: p50 {percentile(latencies, 0.5):.0f}, p99 {percentile(latencies, 0.99):.0f}, "
          f"max {max(latencies, default=0):.0f}")  # fmt: skip
    for name, when in sorted(events.items(), key=lambda item: item[1]):
        print(f"event +{when - start:5.1f} s: {name}")
    # Which backends answered, per phase between events.
    marks = sorted(events.items(), key=lambda item: item[1])
    edges = [("start", start), *marks, ("end", records[-1]["t"] + 1)]
    print("answers per backend between events:")
    for (name, begin), (_, end) in itertools.pairwise(edges):
        counts: dict[str, int] = {}
        for r in ok:
            if begin <= r["t"] < end:
                backend = answered_by(r) or "?"
                counts[backend] = counts.get(backend, 0) + 1
        shown = ", ".join(f"{b} {n}" for b, n in sorted(counts.items()))
        print(f"  after {name:>16}: {shown}")
    healthy = not failed
    for name, when in events.items():
        if not name.endswith(" ready"):
            continue
        backend = name.split()[0]
        served = [r for r in ok if r["t"] >= when and answered_by(r) == backend]
        if served:
            print(f"{backend} served again {served[0]['t'] - when:.1f} s after it was ready "
                  f"({len(served)} answers after that)")  # fmt: skip
        else:
            print(f"{backend} got no traffic after it was ready")
            healthy = False
    return 0 if healthy else 1


def jobs(base: str, document: str, count: str, out: str) -> int:
    with open(document, "rb") as stream:
        data = stream.read()
    boundary = "pxserve-fleet-jobs"

    def part(name: str, value: bytes, filename: str = "") -> bytes:
        named = f'name="{name}"' + (f'; filename="{filename}"' if filename else "")
        return f"--{boundary}\r\nContent-Disposition: form-data; {named}\r\n\r\n".encode() + value + b"\r\n"

    form = part("model", b"PP-OCRv6") + part("optionalPayload", b"{}") + part("file", data, "doc.pdf")
    form += f"--{boundary}--\r\n".encode()

    def call(url: str, body: bytes | None = None) -> dict:
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"} if body else {}
        for attempt in range(30):  # a backend restarting answers 503 or not at all: try again
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, data=body, headers=headers), timeout=60
                ) as r:
                    return json.loads(r.read())
            except (urllib.error.HTTPError, OSError) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code not in (502, 503, 504):
                    raise
                time.sleep(1 + attempt)
        raise RuntimeError(f"{url}: no answer")

    started = time.monotonic()
    ids = [call(f"{base}/api/v2/ocr/jobs", form)["data"]["jobId"] for _ in range(int(count))]
    print(f"fleet_load: {len(ids)} jobs submitted", file=sys.stderr)
    results, pages = {}, None
    while len(results) < len(ids) and time.monotonic() - started < 1800:
        for job_id in ids:
            if job_id in results:
                continue
            status = call(f"{base}/api/v2/ocr/jobs/{job_id}")["data"]
            if status["state"] == "done":
                with urllib.request.urlopen(status["resultUrl"]["jsonUrl"], timeout=60) as response:
                    lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
                texts = [
                    " ".join(p["prunedResult"]["rec_texts"])
                    for ln in lines
                    for p in ln["result"]["ocrResults"]
                ]
                results[job_id] = {"state": "done", "pages": len(texts), "texts": texts}
            elif status["state"] == "failed":
                results[job_id] = {"state": "failed", "error": status.get("errorMsg")}
        time.sleep(2)
    with open(out, "w") as stream:
        json.dump(results, stream)
    done = [r for r in results.values() if r["state"] == "done"]
    pages = {r["pages"] for r in done}
    same = len({tuple(r["texts"]) for r in done}) == 1
    print(
        f"fleet_load: {len(done)} of {len(ids)} jobs done in {time.monotonic() - started:.0f} s; "
        f"pages per result {sorted(pages)}; every result the same text: {same}",
        file=sys.stderr,
    )
    return 0 if len(done) == len(ids) and len(pages) == 1 and same else 1


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "jobs":
        return jobs(*sys.argv[2:6])
    if len(sys.argv) == 7 and sys.argv[1] == "load":
        return load(*sys.argv[2:7])
    if len(sys.argv) == 4 and sys.argv[1] == "report":
        return report(*sys.argv[2:4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
