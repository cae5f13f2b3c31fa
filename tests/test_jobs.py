"""PaddleOCR's job API (/api/v2/ocr/jobs) against a real OCR server: submit, poll, fetch; every
bad submission refused with its field; jobs private to their key; cancel; a server SIGKILLed
mid-job goes on after a restart with every page once; a full disk fails one job, not others.
The real clients (PaddleOCR's SDK and CLI, LangChain, Haystack, the MCP server) are in
tests/test_job_clients.py; a fleet on PostgreSQL in tests/test_job_fleet.py."""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pdfs
import pytest
import requests
import yaml
from conftest import Server, children_of, metric, start_server, wait_until
from PIL import Image

JOBS = "/api/v2/ocr/jobs"
KEY_A, KEY_B = "key-alpha", "key-bravo"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def page_texts(count: int) -> list[str]:
    """One short line per page, naming its page (the words repeat after ten pages)."""
    return [f"Page {i + 1} {WORDS[i % len(WORDS)]}" for i in range(count)]


def ocr_config(folder: Path, **serving: Any) -> Path:
    """The shipped OCR pipeline with these Serving settings."""
    config = yaml.safe_load((resources.files("pxserve.configs") / "OCR.yaml").read_text())
    config["Serving"] = {**(config.get("Serving") or {}), "visualize": False, **serving}
    path = folder / f"ocr-{len(list(folder.glob('ocr-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class JobClient:
    """What PaddleOCR's clients do, by hand: submit, poll, fetch the result file."""

    def __init__(self, server: Server, key: str | None = None) -> None:
        self.server = server
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def submit(
        self, data: bytes, name: str = "doc.pdf", model: str = "PP-OCRv6", **fields: str
    ) -> requests.Response:
        form = {"model": model, "optionalPayload": "{}", **fields}
        files = {"file": (name, data)}
        return requests.post(
            f"{self.server.url}{JOBS}", data=form, files=files, headers=self.headers, timeout=120
        )

    def job_id(self, data: bytes, **fields: str) -> str:
        response = self.submit(data, **fields)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["code"] == 0 and body["msg"] == "Success", body
        return body["data"]["jobId"]

    def status(self, job_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.server.url}{JOBS}/{job_id}", headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def wait(self, job_id: str, deadline_s: float = 240) -> dict[str, Any]:
        return wait_until(
            lambda: (s := self.status(job_id))["state"] in ("done", "failed") and s,
            deadline_s,
            f"job {job_id}",
        )

    def result(self, status: dict[str, Any]) -> list[dict[str, Any]]:
        """The result file, fetched as the clients do: without the Authorization header."""
        response = requests.get(status["resultUrl"]["jsonUrl"], timeout=30)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/jsonl; charset=utf-8"
        return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]


def texts_of(lines: list[dict[str, Any]]) -> list[str]:
    return [" ".join(p["prunedResult"]["rec_texts"]) for line in lines for p in line["result"]["ocrResults"]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("jobs")
    config = ocr_config(tmp, max_stream_pages=20, auth_metrics=False, jobs={"lease_s": 3})
    env = {"PXSERVE_API_KEYS": f"{KEY_A},{KEY_B}", "PXSERVE_DATA_DIR": str(tmp / "data")}
    running = start_server(config, tmp, env=env)
    yield running
    running.stop()


def test_a_job_reads_the_pages_asked_for_and_its_result_needs_no_key(server: Server) -> None:
    client = JobClient(server, KEY_A)
    # Langflow's snake_case, with "" for a number it leaves unset; an unknown key is ignored.
    payload = orjson.dumps({"text_rec_score_thresh": "", "use_textline_orientation": False, "colour": "blue"})
    job_id = client.job_id(
        pdfs.text_pages(page_texts(5)), pageRanges="2,4-5", optionalPayload=payload.decode()
    )
    status = client.wait(job_id)
    assert status["state"] == "done", status
    assert status["extractProgress"]["totalPages"] == status["extractProgress"]["extractedPages"] == 3
    assert status["extractProgress"]["startTime"] and status["extractProgress"]["endTime"]
    assert status["resultUrl"]["jsonUrl"].startswith(server.url)
    lines = client.result(status)
    assert texts_of(lines) == ["Page 2 bravo", "Page 4 delta", "Page 5 echo"]
    for line in lines:  # the whole document's dataInfo on every line: clients merge them
        assert line["result"]["dataInfo"]["numPages"] == 3 and len(line["result"]["dataInfo"]["pages"]) == 3
    # An image is a one-page job; some clients write the scheme "bearer".
    picture = io.BytesIO()
    Image.new("RGB", (400, 120), "white").save(picture, "PNG")
    lower = JobClient(server)
    lower.headers = {"Authorization": f"bearer {KEY_A}"}
    assert (
        lower.wait(lower.job_id(picture.getvalue(), name="blank.png"))["extractProgress"]["totalPages"] == 1
    )
    wait_until(lambda: metric(server, 'pxserve_jobs{state="done"}') >= 2, 20, "the job census")
    assert metric(server, "pxserve_job_pages_total") >= 4


BAD_SUBMISSIONS = {
    "a vision-language model": (
        {"model": "PaddleOCR-VL-1.6"},
        b"%PDF",
        400,
        "serves: PP-OCRv5, PP-OCRv5-latin, PP-OCRv6",
    ),
    "an unknown model": ({"model": "GPT-4o"}, b"%PDF", 400, "unknown model"),
    "a payload that is not JSON": (
        {"optionalPayload": "{nope"},
        b"%PDF",
        400,
        "optionalPayload is not valid JSON",
    ),
    "a wrong type in the payload": (
        {"optionalPayload": '{"textDetThresh": "high"}'},
        b"%PDF",
        400,
        "textDetThresh",
    ),
    "pages counted from zero": ({"pageRanges": "0-2"}, b"%PDF", 400, "pageRanges"),
    "a backwards range": ({"pageRanges": "5-3"}, b"%PDF", 400, "pageRanges"),
    "words for pages": ({"pageRanges": "first"}, b"%PDF", 400, "pageRanges"),
    "pages past the end": ({"pageRanges": "9"}, pdfs.text_pages(page_texts(2)), 400, "the file has 2 page"),
    "a zero-byte upload": ({}, b"", 400, "the upload is empty"),
    "junk bytes": ({}, os.urandom(3000), 422, "file"),
    "an encrypted PDF": ({}, pdfs.encrypted(), 422, "password"),
    "a truncated PDF": ({}, pdfs.text_pages(page_texts(3))[:300], 422, "PDF"),
    "more pages than a job reads": ({}, pdfs.text_pages(page_texts(25)), 413, "at most 20"),
}


@pytest.mark.parametrize("case", list(BAD_SUBMISSIONS))
def test_a_bad_submission_is_refused_at_submit_naming_what_is_wrong(server: Server, case: str) -> None:
    fields, data, status, words = BAD_SUBMISSIONS[case]
    if data == b"%PDF":
        data = pdfs.text_pages(page_texts(1))
    response = JobClient(server, KEY_A).submit(data, **fields)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status and words.lower() in body["msg"].lower(), body
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


def test_an_image_that_decodes_to_a_bomb_and_a_private_file_url_are_refused(server: Server) -> None:
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, "PNG")  # 144 megapixels in a few kilobytes
    response = JobClient(server, KEY_A).submit(bomb.getvalue(), name="bomb.png")
    assert response.status_code == 422 and "exceeds maximum allowed" in response.json()["msg"]
    headers = {"Authorization": f"Bearer {KEY_A}"}
    body = {"fileUrl": "http://127.0.0.1:1/doc.pdf", "model": "PP-OCRv6", "optionalPayload": {}}
    response = requests.post(f"{server.url}{JOBS}", json=body, headers=headers, timeout=30)
    assert response.status_code == 400 and "fileUrl" in response.json()["msg"], response.text


def test_jobs_are_private_to_their_key_and_their_result_url_is_the_only_way_in(server: Server) -> None:
    mine = JobClient(server, KEY_A)
    status = mine.wait(mine.job_id(pdfs.text_pages(page_texts(1)), batchId="private-batch"))
    other = requests.get(
        f"{server.url}{JOBS}/{status['jobId']}", headers={"Authorization": f"Bearer {KEY_B}"}
    )
    assert other.status_code == 404 and other.json()["code"] == 404
    assert (
        requests.get(
            f"{server.url}{JOBS}/batch/private-batch", headers={"Authorization": f"Bearer {KEY_B}"}
        ).status_code
        == 404
    )
    assert requests.get(f"{server.url}{JOBS}/job-nothing", headers=mine.headers).status_code == 404
    unauthorized = requests.get(f"{server.url}{JOBS}/{status['jobId']}", timeout=5)
    assert unauthorized.status_code == 401 and unauthorized.json()["code"] == 401
    url = status["resultUrl"]["jsonUrl"]
    token = url.split("/")[-2]
    for tampered in (
        url.replace(token, token[:-1] + ("A" if token[-1] != "A" else "B")),
        url.replace("result.jsonl", ".input"),
    ):
        response = requests.get(tampered, timeout=5)
        assert response.status_code == 404 and response.json()["code"] == 404


def test_a_batch_lists_its_jobs_and_a_page_that_cannot_be_read_fails_only_its_job(server: Server) -> None:
    client = JobClient(server, KEY_A)
    good = [client.job_id(pdfs.text_pages(page_texts(2)), batchId="mixed") for _ in range(2)]
    broken = client.job_id(pdfs.text_pages(page_texts(3), broken=frozenset({1})), batchId="mixed")
    for job_id in [*good, broken]:
        client.wait(job_id)
    response = requests.get(f"{server.url}{JOBS}/batch/mixed", headers=client.headers, timeout=10)
    states = {s["jobId"]: s for s in response.json()["data"]["extractResult"]}
    assert [states[j]["state"] for j in good] == ["done", "done"]
    assert states[broken]["state"] == "failed" and "page 2" in states[broken]["errorMsg"]


def test_a_cancelled_job_stops_reading(server: Server) -> None:
    client = JobClient(server, KEY_A)
    job_id = client.job_id(pdfs.text_pages(page_texts(20)))
    wait_until(lambda: client.status(job_id)["extractProgress"]["extractedPages"] >= 1, 120, "a first page")
    response = requests.delete(f"{server.url}{JOBS}/{job_id}", headers=client.headers, timeout=10)
    assert response.status_code == 200 and response.json()["data"]["state"] == "failed"
    wait_until(lambda: f"job {job_id}: stopped here" in server.logs(), 30, "the runner to stop the job")
    status = client.status(job_id)
    assert status["errorMsg"] == "cancelled by the client"
    assert status["extractProgress"]["extractedPages"] < 20
    again = requests.delete(f"{server.url}{JOBS}/{job_id}", headers=client.headers, timeout=10)
    assert again.status_code == 409


def test_a_server_killed_mid_job_goes_on_after_a_restart_with_every_page_once(tmp_path: Path) -> None:
    urls = {"enabled": True, "allow_private_networks": True, "timeout_s": 1}  # for the fileUrl checks below
    config = ocr_config(tmp_path, max_stream_pages=100, url_inputs=urls)
    env = {"PXSERVE_DATA_DIR": str(tmp_path / "data")}
    first = start_server(config, tmp_path, env=env)
    client = JobClient(first)
    count = 24
    job_id = client.job_id(pdfs.text_pages(page_texts(count)))
    wait_until(lambda: client.status(job_id)["extractProgress"]["extractedPages"] >= 3, 120, "three pages")
    family = [first.pid, *children_of(first.pid)]
    for pid in family:
        os.kill(pid, signal.SIGKILL)
    first.process.wait()
    second = start_server(config, tmp_path, env=env)  # the same command again
    try:
        again = JobClient(second)
        status = again.wait(job_id)
        assert status["state"] == "done", status
        assert texts_of(again.result(status)) == page_texts(count)  # every page once, in order
        assert "is gone; it goes on from its last page read" in second.logs()
        # fileUrl, under the URL-input policy: fetched, or refused at submit when it times out.
        with _serving(pdfs.text_pages(page_texts(2))) as (origin, silent):
            headers = {"Content-Type": "application/json"}
            body = {"fileUrl": f"{origin}/two.pdf", "model": "PP-OCRv5", "optionalPayload": {}}
            response = requests.post(f"{second.url}{JOBS}", json=body, headers=headers, timeout=30)
            fetched = again.wait(response.json()["data"]["jobId"])
            assert texts_of(again.result(fetched)) == page_texts(2)
            assert "PP-OCRv5 is not served here" in fetched["notes"][0]
            body["fileUrl"] = f"{silent}/never.pdf"
            response = requests.post(f"{second.url}{JOBS}", json=body, timeout=30)
            assert (
                response.status_code == 422
                and "fileUrl: fetching the URL took longer" in response.json()["msg"]
            )
    finally:
        second.stop()


@contextlib.contextmanager
def _serving(document: bytes) -> Iterator[tuple[str, str]]:
    """A local HTTP server with ``document`` at any path, and a port that accepts and never answers."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        yield f"http://127.0.0.1:{web.server_port}", f"http://127.0.0.1:{silent.getsockname()[1]}"
    finally:
        web.shutdown()
        silent.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1.5 MB file system (tmpfs), where this machine lets the tests mount one."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_disk_that_fills_up_fails_the_job_that_filled_it_and_not_the_next(
    tmp_path: Path, small_disk: Path
) -> None:
    config = ocr_config(tmp_path, jobs={"results_dir": str(small_disk)})
    server = start_server(config, tmp_path)
    try:
        client = JobClient(server)
        photo = io.BytesIO()
        Image.effect_noise((1600, 1200), 60).convert("RGB").save(photo, "JPEG", quality=40)
        assert len(photo.getvalue()) < 700_000
        big = client.job_id(photo.getvalue(), name="noise.jpg", optionalPayload='{"visualize": true}')
        failed = client.wait(big)
        assert failed["state"] == "failed" and "could not store the result" in failed["errorMsg"], failed
        assert client.wait(client.job_id(pdfs.text_pages(page_texts(1))))["state"] == "done"
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        server.stop()


def test_page_ranges_and_snake_case_read_as_paddleocr_clients_mean_them() -> None:
    from pxserve.frontend.jobs.submission import camel_case, page_ranges

    assert page_ranges("2,4-6") == [1, 3, 4, 5]
    assert page_ranges(" 3 , 1-2 ,3") == [0, 1, 2]
    assert page_ranges("") is None and page_ranges(None) is None
    assert camel_case("use_doc_orientation_classify") == "useDocOrientationClassify"
    assert camel_case("text_det_limit_side_len") == "textDetLimitSideLen"


def test_a_store_lets_one_server_hold_a_job_until_its_lease_runs_out(tmp_path: Path) -> None:
    """Claims, leases and fencing, on the SQLite store (the PostgreSQL one runs the same SQL:
    tests/test_job_fleet.py)."""
    import time as clock

    from pxserve.frontend.jobs.store import Job, SqliteJobStore

    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    store.open()
    job = Job("job-1", "log", "", "PP-OCRv6", "OCR", {}, [0, 1], 2, "token", "http://x", "a.pdf", 10)
    store.add(job)
    assert store.claim("server-b", 30, ["PP-StructureV3"]) is None  # not a pipeline it serves
    held = store.claim("server-a", 0.2, ["OCR"])
    assert held is not None and held.state == "running" and held.lease_owner == "server-a"
    assert store.claim("server-b", 30, ["OCR"]) is None  # held
    assert store.progress("job-1", "server-a", 1)
    wait_until(lambda: clock.time() > held.lease_until, 5, "the lease to run out")
    taken = store.claim("server-b", 30, ["OCR"])
    assert taken is not None and taken.pages_done == 1 and taken.lease_owner == "server-b"
    assert not store.progress("job-1", "server-a", 2)  # the old holder can no longer write
    assert not store.finish("job-1", "server-a", "done")
    assert store.finish("job-1", "server-b", "done") and store.get("job-1").state == "done"
    assert store.census()[0]["done"] == 1
    store.close()


def test_without_a_writable_data_directory_the_job_api_is_off_and_says_why(tmp_path: Path) -> None:
    """A read-only container that never chose a data directory still serves /ocr; a job store
    that cannot be reached is a one-line startup error."""
    config = ocr_config(tmp_path)
    env = {"PXSERVE_DATA_DIR": "", "XDG_DATA_HOME": "/dev/null/nowhere"}
    server = start_server(config, tmp_path, env=env)
    try:
        response = JobClient(server).submit(pdfs.text_pages(page_texts(1)))
        assert response.status_code == 503 and "writable data directory" in response.json()["msg"]
        assert "the job API is off" in server.logs()
        body = {"file": base64.b64encode(pdfs.text_pages(page_texts(1))).decode(), "fileType": 0}
        assert requests.post(f"{server.url}/ocr", json=body, timeout=60).json()["errorCode"] == 0
    finally:
        server.stop()
    store = "postgresql://pxserve:secret@127.0.0.1:1/jobs"
    failed = start_server(config, tmp_path, "--job-store", store, wait=False)
    assert failed.exit_code(timeout=120) == 2
    last = failed.logs().strip().splitlines()[-1]
    assert last.startswith(
        "pxserve: error: jobs.store: cannot open postgresql://pxserve:***@127.0.0.1:1/jobs"
    )
