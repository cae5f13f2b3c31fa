"""Overload: bounded admission, immediate 503s, flat memory."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from conftest import file_b64, start_server, stop_and_check_clean, write_config
from PIL import Image


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_overload_gets_fast_503s_and_memory_stays_flat(tiny_model_dir: Path, tmp_path: Path) -> None:
    noisy = np.random.default_rng(0).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    photo = tmp_path / "noisy.jpg"
    Image.fromarray(noisy).save(photo, quality=95)  # slow enough to decode that a queue forms
    payload = {"image": file_b64(photo), "visualize": False}
    config = write_config(tmp_path, tiny_model_dir, serving={"instances_per_device": 1, "queue_capacity": 4})
    server = start_server(config, tmp_path)

    def ask(_: int) -> tuple[int, float, str | None]:
        started = time.monotonic()
        response = requests.post(f"{server.url}/image-classification", json=payload, timeout=60)
        return response.status_code, time.monotonic() - started, response.headers.get("Retry-After")

    try:
        results = []
        memory = []
        with ThreadPoolExecutor(max_workers=32) as pool:
            for _ in range(6):
                results += list(pool.map(ask, range(64)))
                memory.append(rss_mib(server.pid))
        refused = [r for r in results if r[0] == 503]
        served = [r for r in results if r[0] == 200]
        assert {status for status, _, _ in results} <= {200, 503}
        assert len(refused) > 0 and len(served) >= 6 * 4
        assert all(retry == "1" for _, _, retry in refused)
        assert np.percentile([t for _, t, _ in refused], 90) < 1.0  # at once, not after a timeout
        assert max(t for _, t, _ in served) < 30  # admitted requests finish, queue is bounded
        # RSS after a burst moves with how many bodies happened to be in flight at
        # once (tens of MiB); a leak of one body per request would add 160 MiB a burst.
        assert max(memory[2:]) - max(memory[:2]) < 64, memory
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        stop_and_check_clean(server)
