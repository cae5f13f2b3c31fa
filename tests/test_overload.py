"""Overload: bounded admission, immediate 503s, flat memory."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from conftest import (
    file_b64,
    image_b64,
    metric,
    solid,
    start_server,
    stop_and_check_clean,
    wait_until,
    write_config,
)
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


def open_slow_upload(server_port: int, declared: int = 100_000) -> socket.socket:
    """A client that sends its headers and a few bytes of body, then stalls."""
    sock = socket.create_connection(("127.0.0.1", server_port), timeout=30)
    head = (
        "POST /image-classification HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"image": "')
    return sock


def read_status(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_slow_uploads_hold_a_place_only_until_the_deadline(tiny_model_dir: Path, tmp_path: Path) -> None:
    serving = {"instances_per_device": 1, "queue_capacity": 2, "request_timeout_s": 2}
    server = start_server(write_config(tmp_path, tiny_model_dir, serving=serving), tmp_path)
    red = {"image": image_b64(solid((220, 30, 30)))}
    try:
        slow = [open_slow_upload(server.port) for _ in range(2)]
        # Bodies still arriving count against queue_capacity: a third request is refused at once.
        classify = f"{server.url}/image-classification"
        refused = lambda: requests.post(classify, json=red, timeout=5).status_code == 503  # noqa: E731
        wait_until(refused, 5, "the slow uploads to fill the queue")
        started = time.monotonic()
        for sock in slow:
            status, body = read_status(sock)
            assert status == 408 and body["errorCode"] == 408 and "deadline" in body["errorMsg"], body
            sock.close()
        assert time.monotonic() - started < 10
        response = requests.post(classify, json=red, timeout=10)
        assert response.status_code == 200 and response.json()["result"]["categories"][0]["name"] == "red"
        # A client that hangs up mid-body frees its place too.
        quitter = open_slow_upload(server.port)
        wait_until(lambda: metric(server, "pxserve_queue_depth") == 1, 10, "the upload to be admitted")
        quitter.close()
        hung_up = '"POST /image-classification" 499'  # nginx's "client closed request", in the access log
        wait_until(lambda: hung_up in server.logs(), 10, "the hang-up to be noticed")
        wait_until(lambda: metric(server, "pxserve_queue_depth") == 0, 10, "its place to be given back")
        assert "Traceback" not in server.logs()
    finally:
        stop_and_check_clean(server)
