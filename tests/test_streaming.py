"""Long documents streamed page by page (Accept: application/x-ndjson), and dropped pages announced.

One real server: OCR (two workers, a normal answer reads 3 pages, a
streamed one up to 200) and the tiny classifier beside it. Pages are
Helvetica text ("Page 17") so each line can be matched to its page.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pdfs
import pytest
import requests
from conftest import Server, metric, start_server, stop_and_check_clean, wait_until, write_config
from test_ocr import DATA, b64, b64_file, write_ocr_config

NDJSON = {"Accept": "application/x-ndjson"}
MAX_STREAM_PAGES = 200
DETECTED_PAGES = 'pxserve_model_batch_size_sum{model="PP-OCRv4_mobile_det"}'


@pytest.fixture(scope="module")
def server(work_dir: Path, tiny_model_dir: Path) -> Server:
    folder = work_dir / "streaming"
    folder.mkdir()
    serving = {"instances_per_device": 2, "cpu_threads": 1, "max_pdf_pages": 3}
    ocr = write_ocr_config(folder, {**serving, "max_stream_pages": MAX_STREAM_PAGES})
    classify = write_config(folder, tiny_model_dir)
    running = start_server(ocr, folder, "--pipeline", str(classify))
    yield running
    stop_and_check_clean(running)


def numbered(count: int, broken: frozenset[int] = frozenset()) -> dict[str, Any]:
    document = pdfs.text_pages([f"Page {i}" for i in range(count)], broken)
    return {"file": b64(document), "fileType": 0}


def stream(
    server: Server, payload: dict[str, Any], on_first: Callable[[], Any] = lambda: None
) -> tuple[requests.Response, list[tuple[float, dict]]]:
    """Every line of a streamed answer, with the time it arrived; ``on_first`` runs when the first arrives."""
    started = time.monotonic()
    response = requests.post(f"{server.url}/ocr", json=payload, headers=NDJSON, stream=True, timeout=300)
    lines = []
    for line in response.iter_lines():
        lines.append((time.monotonic() - started, json.loads(line)))
        if len(lines) == 1:
            on_first()
    return response, lines


def number_on(line: dict[str, Any]) -> int:
    """The page number the OCR read on a line's page ("Page 17" -> 17)."""
    return int(re.sub(r"\D", "", "".join(line["result"]["prunedResult"]["rec_texts"])) or -1)


@pytest.mark.slow
def test_a_40_page_pdf_streams_every_page_in_order_as_pages_finish(server: Server) -> None:
    detected = metric(server, DETECTED_PAGES)
    read_by_then: list[float] = []

    def count_pages_read() -> None:
        read_by_then.append(metric(server, DETECTED_PAGES))

    response, lines = stream(server, numbered(40), count_pages_read)
    assert response.status_code == 200
    # When the first page arrived, most pages had not even been started (let alone the last read).
    assert read_by_then[0] - detected <= 16, read_by_then
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    *pages, (last_at, last) = lines
    assert [line["pageIndex"] for _, line in pages] == list(range(40))
    assert [number_on(line) for _, line in pages] == list(range(40))
    assert all(line["errorCode"] == 0 and line["errorMsg"] == "Success" for _, line in lines)
    assert len({line["logId"] for _, line in lines}) == 1
    # The first page reached the client long before the document was done.
    first_at = pages[0][0]
    assert first_at < last_at / 2, (first_at, last_at)
    result = last["result"]
    assert "pageIndex" not in last
    assert result["dataInfo"]["numPages"] == 40 and len(result["dataInfo"]["pages"]) == 40
    assert result["dataInfo"]["pages"][0] == {"width": 600, "height": 240}
    assert result["totals"]["pages"] == result["totals"]["pagesInFile"] == 40
    assert result["totals"]["pagesDropped"] == 0
    assert "X-Pxserve-Pages-Dropped" not in response.headers


@pytest.mark.slow
def test_each_line_is_the_page_exactly_as_in_the_normal_answer(server: Server) -> None:
    payload = numbered(3)
    whole = requests.post(f"{server.url}/ocr", json=payload, timeout=120).json()["result"]
    _, lines = stream(server, payload)
    assert [line["result"] for _, line in lines[:-1]] == whole["ocrResults"]
    assert lines[-1][1]["result"]["dataInfo"] == whole["dataInfo"]
    # An image is a one-page stream.
    _, lines = stream(server, {"file": b64_file(DATA / "page_region.jpg")})
    assert [line.get("pageIndex") for _, line in lines] == [0, None]
    assert lines[1][1]["result"]["dataInfo"] == {"width": 712, "height": 218, "type": "image"}
    assert any("MIME" in text for text in lines[0][1]["result"]["prunedResult"]["rec_texts"])


@pytest.mark.slow
def test_a_normal_answer_says_in_a_header_and_the_log_when_pages_were_dropped(server: Server) -> None:
    response = requests.post(f"{server.url}/ocr", json=numbered(12), timeout=120)
    assert response.status_code == 200
    body = response.json()  # PaddleX's answer, unchanged: the first max_pdf_pages pages
    assert set(body) == {"logId", "errorCode", "errorMsg", "result"}
    assert len(body["result"]["ocrResults"]) == body["result"]["dataInfo"]["numPages"] == 3
    assert response.headers["X-Pxserve-Pages-Read"] == "3"
    assert response.headers["X-Pxserve-Pages-Dropped"] == "9"
    wait_until(
        lambda: f"logId={body['logId']}: /ocr read 3 of the PDF's 12 pages" in server.logs(), 5, "the log"
    )
    assert "application/x-ndjson" in server.logs()
    # Beyond max_stream_pages a stream drops pages too, and says so.
    response, lines = stream(server, numbered(MAX_STREAM_PAGES + 5))
    assert response.headers["X-Pxserve-Pages-Dropped"] == "5"
    assert lines[-1][1]["result"]["totals"] == {
        **lines[-1][1]["result"]["totals"], "pages": MAX_STREAM_PAGES, "pagesInFile": MAX_STREAM_PAGES + 5,
        "pagesDropped": 5,
    }  # fmt: skip


@pytest.mark.slow
def test_a_bad_page_mid_stream_ends_it_with_an_error_line(server: Server) -> None:
    response, lines = stream(server, numbered(12, broken=frozenset({7})))
    assert response.status_code == 200  # the stream had begun
    *pages, (_, last) = lines
    assert [line["pageIndex"] for _, line in pages] == list(range(7))
    assert [number_on(line) for _, line in pages] == list(range(7))
    assert last["errorCode"] == 422 and last["pageIndex"] == 7
    assert "page 8" in last["errorMsg"] and "result" not in last
    # A file that is bad from the start is an ordinary error answer.
    bad = requests.post(
        f"{server.url}/ocr", json={"file": b64(b"%PDF-1.4 nothing"), "fileType": 0}, headers=NDJSON
    )
    assert bad.status_code == 422 and bad.headers["Content-Type"].startswith("application/json")
    assert bad.json()["errorCode"] == 422
    healthy = requests.post(f"{server.url}/ocr", json=numbered(1), timeout=60)
    assert healthy.status_code == 200


@pytest.mark.slow
def test_a_client_that_leaves_mid_stream_frees_the_workers(server: Server) -> None:
    detected = metric(server, DETECTED_PAGES)
    dropped = metric(server, "pxserve_tasks_dropped_total")
    body = json.dumps(numbered(MAX_STREAM_PAGES)).encode()
    client = socket.create_connection(("127.0.0.1", server.port))
    head = (
        f"POST /ocr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/x-ndjson\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    client.sendall(head.encode() + body)
    received = b""
    while received.count(b'"pageIndex"') < 2:  # two pages have arrived
        chunk = client.recv(65536)
        assert chunk, received[-300:]
        received += chunk
    client.close()
    wait_until(lambda: metric(server, "pxserve_queue_depth") == 0, 10, "its place to be given back")

    def settled() -> bool:  # no page detected for a second
        before = metric(server, DETECTED_PAGES)
        time.sleep(1.0)
        return metric(server, DETECTED_PAGES) == before

    wait_until(settled, 60, "the workers to stop reading its pages")
    # Most of the 200 pages were never started; those running were dropped.
    assert metric(server, DETECTED_PAGES) - detected < MAX_STREAM_PAGES / 2
    assert metric(server, "pxserve_tasks_dropped_total") > dropped
    started = time.monotonic()
    response = requests.post(f"{server.url}/ocr", json=numbered(1), timeout=60)
    assert response.status_code == 200 and time.monotonic() - started < 10
    wait_until(lambda: '"POST /ocr" 499' in server.logs(), 5, "the stream to be logged as abandoned")
    assert "Traceback" not in server.logs()


@pytest.mark.slow
def test_routes_without_pages_answer_json_whatever_the_accept_header(server: Server) -> None:
    from conftest import COLORS, image_b64, solid

    response = requests.post(
        f"{server.url}/image-classification", json={"image": image_b64(solid(COLORS["red"]))}, headers=NDJSON
    )
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert response.json()["result"]["categories"][0]["name"] == "red"
    # A client that prefers JSON gets JSON.
    prefers = {"Accept": "application/json, application/x-ndjson;q=0.5"}
    plain = requests.post(f"{server.url}/ocr", json=numbered(2), headers=prefers, timeout=60)
    assert plain.headers["Content-Type"].startswith("application/json")
    assert len(plain.json()["result"]["ocrResults"]) == 2


@pytest.mark.slow
def test_a_stream_outlasting_the_drain_grace_at_shutdown_ends_with_a_503_line(work_dir: Path) -> None:
    from pxserve.frontend.page_answers import STREAM_END_MARGIN_S
    from pxserve.frontend.server import DRAIN_GRACE_S

    folder = work_dir / "stopping"
    folder.mkdir()
    config = write_ocr_config(folder, {"instances_per_device": 2, "cpu_threads": 1})
    running = start_server(config, folder)

    def stop_the_server() -> None:
        running.process.send_signal(signal.SIGTERM)

    try:  # a thousand pages take minutes: far longer than the drain grace
        _, lines = stream(running, numbered(1000), stop_the_server)
    finally:
        code = running.stop()
    *pages, (ended_at, last) = lines
    assert code == 0
    assert last["errorCode"] == 503 and last["pageIndex"] == len(pages)
    assert "stopping" in last["errorMsg"] and "send the request again" in last["errorMsg"]
    assert [line["pageIndex"] for _, line in pages] == list(range(len(pages)))
    assert len(pages) < 1000
    assert "Traceback" not in running.logs()
    # It ran on for the drain grace (less the margin the last line needs) after the SIGTERM.
    assert ended_at - lines[0][0] > DRAIN_GRACE_S - STREAM_END_MARGIN_S - 1
