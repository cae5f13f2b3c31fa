"""A server that runs for weeks: abandoned work dropped, workers recycled, big answers carried.

Each test starts the real server with the tiny model and speaks HTTP to it;
a worker is held still with SIGSTOP where a test needs work to pile up, so
what happens to that work can be counted afterwards in /metrics.
"""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import (
    COLORS,
    Server,
    image_b64,
    metric,
    send_whole,
    solid,
    start_server,
    stop_and_check_clean,
    wait_until,
    write_config,
)

RED = image_b64(solid(COLORS["red"]))


def ran_after_one_more(server: Server) -> float:
    """Tasks run so far, counted once one more request's batch is reported."""
    count = metric(server, "pxserve_batch_size_count")
    assert server.classify({"image": RED}).status_code == 200
    wait_until(lambda: metric(server, "pxserve_batch_size_count") > count, 10, "its batch to be reported")
    return metric(server, "pxserve_batch_size_sum")


@pytest.fixture
def held_server(tiny_model_dir: Path, tmp_path: Path) -> Server:
    """One worker taking two tasks a batch (so it is sent at most four at a time)."""
    serving = {
        "instances_per_device": 1,
        "max_batch_size": 2,
        "request_timeout_s": 3,
        "worker_stall_timeout_s": 120,  # the test stops the worker on purpose
    }
    server = start_server(write_config(tmp_path, tiny_model_dir, serving=serving), tmp_path)
    yield server
    for pid in server.workers():
        os.kill(pid, signal.SIGCONT)
    stop_and_check_clean(server)


def test_requests_whose_clients_hang_up_never_run(held_server: Server) -> None:
    server = held_server
    worker = server.workers()[0]
    ran_before = ran_after_one_more(server)
    os.kill(worker, signal.SIGSTOP)
    clients = [send_whole(server.port, "/image-classification", {"image": RED}) for _ in range(10)]
    wait_until(lambda: metric(server, "pxserve_queue_depth") == 10, 10, "all ten to be admitted")
    for sock in clients:
        sock.close()
    # Their places come back at once, though the worker holding some of them is stopped.
    wait_until(lambda: metric(server, "pxserve_queue_depth") == 0, 10, "the places to be given back")
    wait_until(lambda: server.logs().count('"POST /image-classification" 499') == 10, 10, "ten 499s")
    # Four were in the worker's ring (two batches of two), the rest waited in the
    # front; a place freed in the ring may take one of those before it too is dropped.
    assert 4 <= metric(server, "pxserve_tasks_dropped_total") <= 10
    os.kill(worker, signal.SIGCONT)
    response = server.classify({"image": RED})
    assert response.status_code == 200 and response.json()["result"]["categories"][0]["name"] == "red"
    # The worker skipped the four it held: only the new request was run.
    wait_until(lambda: metric(server, "pxserve_batch_size_sum") == ran_before + 1, 10, "the batch stats")
    assert "Traceback" not in server.logs()


def test_requests_past_their_deadline_never_run(held_server: Server) -> None:
    server = held_server
    worker = server.workers()[0]
    ran_before = ran_after_one_more(server)
    os.kill(worker, signal.SIGSTOP)
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: server.classify({"image": RED}).status_code, range(6)))
    assert statuses == [504] * 6
    assert metric(server, "pxserve_queue_depth") == 0
    assert 4 <= metric(server, "pxserve_tasks_dropped_total") <= 6
    os.kill(worker, signal.SIGCONT)
    assert server.classify({"image": RED}).status_code == 200
    wait_until(lambda: metric(server, "pxserve_batch_size_sum") == ran_before + 1, 10, "the batch stats")


def test_a_worker_over_its_memory_limit_is_replaced_with_requests_in_flight(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Below what any loaded worker uses: every worker is recycled once it has served 10 s.
    serving = {"instances_per_device": 2, "max_worker_memory_mb": 1}
    server = start_server(write_config(tmp_path, tiny_model_dir, serving=serving), tmp_path)
    try:
        first = set(server.workers())
        # The supervisor reads each worker's RSS at its watchdog round, which may come just after
        # the server turns healthy.
        wait_until(
            lambda: re.search(r'pxserve_worker_rss_bytes\{worker="0"\} [1-9]', requests.get(
                f"{server.url}/metrics", timeout=5).text),
            10, "worker 0's resident memory in /metrics",
        )  # fmt: skip
        answers: list[tuple[int, str]] = []
        deadline = time.monotonic() + 90

        def client() -> None:
            while metric(server, "pxserve_worker_recycles_total") < 2 and time.monotonic() < deadline:
                response = server.classify({"image": RED})
                top = response.json()["result"]["categories"][0]["name"] if response.ok else response.text
                answers.append((response.status_code, top))

        with ThreadPoolExecutor(max_workers=4) as pool:
            for future in [pool.submit(client) for _ in range(4)]:
                future.result()
        assert metric(server, "pxserve_worker_recycles_total") >= 2
        assert answers and all(answer == (200, "red") for answer in answers), set(answers)
        logs = server.logs()
        assert "is below what a freshly loaded worker uses" in logs
        assert "starting its successor" in logs
        wait_until(lambda: not first & set(server.workers()), 60, "both original workers to retire")
        assert "retired" in server.logs()
        assert "exited (code" not in server.logs()  # retired, never lost
        assert len(server.workers()) >= 2
    finally:
        stop_and_check_clean(server)


def test_a_result_over_max_result_mb_is_a_clear_413(tiny_model_dir: Path, tmp_path: Path) -> None:
    serving = {"instances_per_device": 1, "max_result_mb": 0.0001}  # about 100 bytes
    server = start_server(write_config(tmp_path, tiny_model_dir, serving=serving), tmp_path)
    try:
        response = server.classify({"image": RED})
        body = response.json()
        assert response.status_code == 413 and body["errorCode"] == 413
        assert "Serving.max_result_mb" in body["errorMsg"]
        assert len(server.workers()) == 1
    finally:
        stop_and_check_clean(server)
