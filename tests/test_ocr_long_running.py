"""OCR on a server that runs for days: big answers, busy workers, abandoned PDFs.

One server, one worker (as a container with Docker's default /dev/shm gets),
rings as small as that shared memory makes them, and a watchdog with a
one-second stall timeout: shorter than any page's detection, so a worker
busy with a page must be told from a hung one by more than its heartbeat.
"""

from __future__ import annotations

import base64
import io
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pdfs
import pytest
from conftest import Server, metric, send_whole, start_server, stop_and_check_clean, wait_until
from PIL import Image
from test_ocr import DATA, b64, b64_file, ocr, page_of, write_ocr_config

from pxserve.frontend.placement import MIN_RESPONSE_RING
from pxserve.shared.process_stats import cpu_seconds, rss_bytes

DETECTOR_CALLS = 'pxserve_model_batch_size_count{model="PP-OCRv4_mobile_det"}'


@pytest.fixture(scope="module")
def server(work_dir: Path) -> Server:
    serving = {
        "instances_per_device": 1,
        "cpu_threads": 2,
        "max_pdf_pages": 25,
        "request_ring_mb": 1,  # both rings at their floor: what a 64 MB /dev/shm leaves
        "response_ring_mb": 1,
        "worker_stall_timeout_s": 1,
    }
    running = start_server(write_ocr_config(work_dir, serving), work_dir)
    yield running
    stop_and_check_clean(running)


def noisy_page(seed: int) -> Image.Image:
    """A page with no text whose pictures compress badly: a large answer, quickly read."""
    rng = np.random.default_rng(seed)
    return Image.fromarray((200 + rng.integers(-40, 40, (600, 800, 3))).clip(0, 255).astype(np.uint8))


@pytest.mark.slow
def test_an_answer_larger_than_the_response_ring_arrives_whole(server: Server) -> None:
    document = pdfs.from_images([noisy_page(seed) for seed in range(22)], dpi=144)
    response = ocr(server, {"file": b64(document), "fileType": 0, "visualize": True}, timeout=300)
    assert response.status_code == 200, response.text[:300]
    one_record = MIN_RESPONSE_RING // 2
    assert len(response.content) > 2 * one_record  # several records' worth: it came in pieces
    result = response.json()["result"]
    assert result["dataInfo"]["numPages"] == 22 and len(result["ocrResults"]) == 22
    for page in result["ocrResults"]:
        picture = Image.open(io.BytesIO(base64.b64decode(page["inputImage"])))
        assert picture.size == (800, 600)
        assert page["ocrImage"]
    assert "killing it" not in server.logs()


@pytest.mark.slow
def test_a_worker_busy_with_a_large_page_is_not_taken_for_a_hung_one(server: Server) -> None:
    worker = server.workers()
    page = Image.open(DATA / "page_top.jpg")
    large = page.resize((page.width * 3, page.height * 3))  # ~8 MP: one detector call of seconds
    buffer = io.BytesIO()
    large.save(buffer, format="JPEG", quality=90)
    response = ocr(server, {"file": base64.b64encode(buffer.getvalue()).decode()}, timeout=300)
    assert page_of(response)["rec_texts"]
    assert "killing it" not in server.logs()
    assert server.workers() == worker


@pytest.mark.slow
def test_pdfs_whose_clients_gave_up_stop_costing_worker_time(server: Server) -> None:
    region = Image.open(DATA / "page_region.jpg")
    document = pdfs.from_images([region] * 10)
    calls_before = metric(server, DETECTOR_CALLS)
    worker = server.workers()[0]
    cpu_before = cpu_seconds(worker)
    clients = [send_whole(server.port, "/ocr", {"file": b64(document), "fileType": 0}) for _ in range(4)]
    wait_until(lambda: metric(server, "pxserve_queue_depth") == 4, 10, "the four PDFs to be admitted")
    wait_until(lambda: cpu_seconds(worker) > cpu_before + 2, 60, "the worker to be reading pages")
    for sock in clients:  # four clients give up: 40 pages asked for
        sock.close()
    wait_until(lambda: metric(server, "pxserve_queue_depth") == 0, 10, "their places to be given back")
    photo = ocr(server, {"file": b64_file(DATA / "half_upside_down.jpg")})
    assert page_of(photo)["rec_texts"]
    # The photo waited behind what the worker had in hand, not behind 40 pages.
    wait_until(lambda: metric(server, DETECTOR_CALLS) > calls_before, 10, "the batch stats")
    assert metric(server, DETECTOR_CALLS) - calls_before <= 10
    assert metric(server, "pxserve_tasks_dropped_total") >= 1
    assert "Traceback" not in server.logs()


# -- memory at rest ---------------------------------------------------------------------------
def resident_mib(pid: int) -> float:
    return rss_bytes(pid) / 2**20


def tall_page() -> dict:
    """A text-dense page of 1271x1480 (the top of a page, twice): a detector call of its size
    holds several hundred MiB with Paddle."""
    top = Image.open(DATA / "page_top.jpg").convert("RGB")
    page = Image.new("RGB", (top.width, 2 * top.height), "white")
    page.paste(top, (0, 0))
    page.paste(top, (0, top.height))
    buffer = io.BytesIO()
    page.save(buffer, format="JPEG", quality=90)
    return {"file": base64.b64encode(buffer.getvalue()).decode(), "fileType": 1, "visualize": False}


def settled_mib(pid: int) -> float:
    """The worker's resident memory once it has stopped changing (read 1 s apart)."""
    readings = [resident_mib(pid)]

    def steady() -> bool:
        readings.append(resident_mib(pid))
        return abs(readings[-1] - readings[-2]) < 8

    wait_until(steady, 15, "the worker's memory to settle", interval=1.0)
    return readings[-1]


@pytest.mark.slow
def test_a_worker_gives_back_what_its_pages_took_once_it_waits_for_work(server: Server) -> None:
    worker = server.workers()[0]
    page = tall_page()
    assert page_of(ocr(server, page))["rec_texts"]
    rest = settled_mib(worker)
    # Pages of one size keep the detector's memory for the next one (a PDF's pages are fast
    # that way); idle, the worker gives it back.
    for _ in range(2):
        assert page_of(ocr(server, page))["rec_texts"]
    wait_until(lambda: resident_mib(worker) <= rest + 64, 5, f"the worker back near {rest:.0f} MiB")


@pytest.mark.slow
def test_past_max_kept_mb_a_busy_worker_gives_back_after_each_batch(work_dir: Path) -> None:
    """max_kept_mb: 0, and pages sent back to back: the worker is never idle, yet between its
    detector calls it holds what it holds at rest, not the last page's activations."""
    serving = {"instances_per_device": 1, "cpu_threads": 2, "max_kept_mb": 0}
    running = start_server(write_ocr_config(work_dir, serving), work_dir)
    try:
        worker = running.workers()[0]
        page = tall_page()
        assert page_of(ocr(running, page))["rec_texts"]
        rest = settled_mib(worker)
        samples: list[float] = []
        sending = [True]

        def sample() -> None:
            while sending[0]:
                samples.append(resident_mib(worker))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for _ in range(4):
                assert page_of(ocr(running, page))["rec_texts"]
        finally:
            sending[0] = False
            sampler.join()
        peak = max(samples)
        assert peak > rest + 150, (rest, peak)  # a detector call does hold this much
        # Kept between pages (the default), the median would be the peak's level.
        assert statistics.median(samples) < rest + (peak - rest) / 2, (rest, peak, statistics.median(samples))
    finally:
        stop_and_check_clean(running)
