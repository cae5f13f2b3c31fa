"""The HTTP API as PaddleX clients see it, against a real server and a real model."""

from __future__ import annotations

import base64
import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import tiny_model
from conftest import (
    COLORS,
    Server,
    file_b64,
    image_b64,
    solid,
    start_server,
    stop_and_check_clean,
    wait_until,
    write_config,
)
from PIL import Image


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, work_dir: Path, cache_dir: Path) -> Server:
    config = write_config(
        work_dir,
        tiny_model_dir,
        serving={"instances_per_device": 2, "max_batch_size": 8, "max_body_mb": 1, "visualize": True},
    )
    running = start_server(config, work_dir, "--log-level", "DEBUG")
    yield running
    stop_and_check_clean(running)


def assert_envelope_error(response: requests.Response, status: int, pattern: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"logId", "errorCode", "errorMsg"}
    assert body["errorCode"] == status
    assert re.search(pattern, body["errorMsg"]), body["errorMsg"]
    return body


def test_health_has_paddlex_shape(server: Server) -> None:
    response = requests.get(f"{server.url}/health", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["errorCode"] == 0 and body["errorMsg"] == "Healthy"
    assert re.fullmatch(r"[0-9a-f-]{36}", body["logId"])


def test_paddlex_documented_client_gets_the_right_class(server: Server) -> None:
    for name, color in COLORS.items():
        payload = {"image": image_b64(solid(color))}
        response = requests.post(f"{server.url}/image-classification", json=payload, timeout=30)
        assert response.status_code == 200
        body = response.json()
        assert body["errorCode"] == 0 and body["errorMsg"] == "Success"
        categories = body["result"]["categories"]
        assert categories[0]["name"] == name
        assert categories[0]["id"] == list(COLORS).index(name)
        assert [c["score"] for c in categories] == sorted((c["score"] for c in categories), reverse=True)


def test_topk_and_older_inference_params(server: Server) -> None:
    image = image_b64(solid(COLORS["blue"]))
    assert len(server.classify({"image": image, "topk": 2}).json()["result"]["categories"]) == 2
    older = server.classify({"image": image, "inferenceParams": {"topK": 1}}).json()["result"]
    assert [c["name"] for c in older["categories"]] == ["blue"]
    # A topk larger than the number of classes returns every class.
    assert len(server.classify({"image": image, "topk": 50}).json()["result"]["categories"]) == 3


def test_visualize_returns_a_jpeg_of_the_input_or_null(server: Server) -> None:
    image = solid(COLORS["green"], size=(80, 60))
    shown = server.classify({"image": image_b64(image)}).json()["result"]["image"]  # config default: on
    rendered = Image.open(io.BytesIO(base64.b64decode(shown)))
    assert rendered.format == "JPEG" and rendered.size == (80, 60)
    hidden = server.classify({"image": image_b64(image), "visualize": False}).json()["result"]
    assert hidden["image"] is None


@pytest.mark.parametrize(
    ("payload", "pattern"),
    [
        ({}, r"^image: Field required"),
        ({"image": ""}, r"^image: must not be empty"),
        ({"image": "not base64!"}, r"^image: is not valid Base64"),
        ({"image": 42}, r"^image: Input should be a valid string"),
        ({"image": "aGVsbG8gd29ybGQ="}, r"^image: the data is not an image"),
        ({"image": "https://example.com/cat.jpg"}, r"URL inputs are disabled"),
        ({"image": "aGVsbG8=", "topk": 0}, r"^topk: Input should be greater than 0"),
        ({"image": "aGVsbG8=", "topk": "3"}, r"^topk: Input should be a valid integer"),
        ({"image": "aGVsbG8=", "topk": True}, r"^topk: Input should be a valid integer"),
        ({"image": "aGVsbG8=", "visualize": "yes"}, r"^visualize: Input should be a valid boolean"),
        ({"image": "aGVsbG8=", "inferenceParams": {"topK": -1}}, r"^inferenceParams.topK: "),
    ],
)
def test_invalid_requests_get_422_with_the_field(server: Server, payload: dict, pattern: str) -> None:
    assert_envelope_error(server.classify(payload), 422, pattern)


def test_truncated_image_is_a_clean_422(server: Server) -> None:
    data = base64.b64decode(image_b64(solid(COLORS["red"], size=(64, 64))))
    truncated = base64.b64encode(data[: len(data) // 2]).decode()
    assert_envelope_error(
        server.classify({"image": truncated}),
        422,
        r"^image: the image (header could not be read|could not be decoded)",
    )


def test_malformed_bodies_and_unknown_routes_stay_in_the_envelope(server: Server) -> None:
    url = f"{server.url}/image-classification"
    assert_envelope_error(requests.post(url, data=b"{not json", timeout=5), 422, "not valid JSON")
    assert_envelope_error(requests.post(url, json=[1, 2], timeout=5), 422, "must be a JSON object")
    assert_envelope_error(requests.get(f"{server.url}/nope", timeout=5), 404, "Not Found")
    assert_envelope_error(requests.get(url, timeout=5), 405, "Method Not Allowed")


def test_body_over_the_limit_is_413(server: Server) -> None:
    huge = {"image": "A" * (1024 * 1024 + 10)}  # config: max_body_mb 1
    assert_envelope_error(server.classify(huge), 413, "larger than the limit")


def test_base64_wrapped_in_lines_and_other_formats_work(server: Server) -> None:
    png = image_b64(solid(COLORS["red"]).convert("P"), "PNG")
    wrapped = "\n".join(png[i : i + 76] for i in range(0, len(png), 76))
    assert server.classify({"image": wrapped}).json()["result"]["categories"][0]["name"] == "red"
    gray = image_b64(Image.new("L", (40, 40), 128), "BMP")
    assert server.classify({"image": gray}).status_code == 200
    rgba = image_b64(Image.new("RGBA", (40, 40), (*COLORS["green"], 255)), "PNG")
    assert server.classify({"image": rgba}).json()["result"]["categories"][0]["name"] == "green"


def test_exif_orientation_is_applied(server: Server) -> None:
    # Left half red, right half blue; stored rotated with an EXIF tag saying so.
    image = Image.new("RGB", (64, 32), COLORS["red"])
    image.paste(Image.new("RGB", (32, 32), COLORS["blue"]), (32, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    response = server.classify({"image": image_b64(image, exif=exif.tobytes())})
    assert response.status_code == 200
    # The model sees the upright image; centre-cropping keeps both halves.
    assert {c["name"] for c in response.json()["result"]["categories"][:2]} == {"red", "blue"}


def test_concurrent_requests_each_get_their_own_answer_and_are_batched(server: Server) -> None:
    names = [list(COLORS)[i % 3] for i in range(96)]
    payloads = {name: image_b64(solid(color)) for name, color in COLORS.items()}

    def ask(name: str) -> str:
        response = server.classify({"image": payloads[name], "topk": 1})
        assert response.status_code == 200, response.text
        return response.json()["result"]["categories"][0]["name"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(ask, names))
    assert answers == names  # no request ever receives another's result
    sizes = [int(n) for n in re.findall(r"batch size (\d+)", server.logs())]  # --log-level DEBUG
    assert sizes and max(sizes) > 1, "concurrent requests were never merged into a batch"
    batches = metric_samples(server, "pxserve_batch_size")
    tasks = batches["pxserve_batch_size_sum,pipeline=image_classification"]
    assert tasks >= 96
    assert batches["pxserve_batch_size_count,pipeline=image_classification"] < tasks  # mean size > 1


def metric_samples(server: Server, family: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.url}/metrics", timeout=5).text
    found = {}
    for metric in text_string_to_metric_families(text):
        if metric.name == family:
            for sample in metric.samples:
                labels = "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()))
                found[sample.name + labels] = sample.value
    return found


def test_metrics_count_requests_by_route_and_status(server: Server) -> None:
    server.classify({"image": "bad base64!"})
    server.classify({"image": image_b64(solid(COLORS["red"]))})
    counted = metric_samples(server, "pxserve_requests")
    route = "pxserve_requests_total,pipeline=image_classification,route=/image-classification"
    assert counted[f"{route},status=422"] >= 1
    assert counted[f"{route},status=200"] >= 1
    assert metric_samples(server, "pxserve_workers_ready")["pxserve_workers_ready"] == 2


def test_a_lone_request_borrows_the_idle_workers_core(
    server: Server, tiny_model_dir: Path, work_dir: Path
) -> None:
    """Two workers of one thread: with ONNX Runtime a call made while the other worker waits
    runs on both cores, and /metrics says so (pxserve_model_calls by threads); Paddle keeps
    to one thread (a predictor per count cost too much memory)."""
    assert all(
        key.endswith("threads=1") for key in metric_samples(server, "pxserve_model_calls")
        if key.startswith("pxserve_model_calls_total")
    )  # fmt: skip
    config = write_config(work_dir, tiny_model_dir, serving={"instances_per_device": 2})
    hpip = start_server(config, work_dir, "--use_hpip")
    try:
        _borrows(hpip)
    finally:
        stop_and_check_clean(hpip)


def _borrows(server: Server) -> None:
    def calls() -> dict[str, float]:
        samples = metric_samples(server, "pxserve_model_calls")
        counted = {k: v for k, v in samples.items() if k.startswith("pxserve_model_calls_total")}
        return {k.rsplit("threads=", 1)[1]: v for k, v in counted.items()}

    before = calls()
    assert server.classify({"image": image_b64(solid(COLORS["blue"]))}).status_code == 200
    after = wait_until(
        lambda: (found := calls()) != before and found, 10, "the batch's model calls in /metrics"
    )
    borrowed = {t: n - before.get(t, 0) for t, n in after.items() if int(t) > 1 and n > before.get(t, 0)}
    assert borrowed, f"every call ran on one thread: {after}"


def test_real_photo_file_round_trip(server: Server) -> None:
    response = server.classify({"image": file_b64(Path(__file__).parent / "data" / "coffee.jpg")})
    assert response.status_code == 200
    assert len(response.json()["result"]["categories"]) == 3


def test_older_pdmodel_directories_are_served(work_dir: Path, tmp_path: Path) -> None:
    model_dir = tiny_model.build_legacy(tmp_path / "legacy")
    config = write_config(work_dir, model_dir, serving={"instances_per_device": 1})
    legacy = start_server(config, work_dir)
    try:
        for name, color in COLORS.items():
            result = legacy.classify({"image": image_b64(solid(color))}).json()["result"]
            assert result["categories"][0]["name"] == name
    finally:
        stop_and_check_clean(legacy)


def test_server_started_without_visualize_default(tiny_model_dir: Path, work_dir: Path) -> None:
    config = write_config(work_dir, tiny_model_dir, serving={"visualize": False, "instances_per_device": 1})
    other = start_server(config, work_dir)
    try:
        result = other.classify({"image": image_b64(solid(COLORS["red"]))}).json()["result"]
        assert result["image"] is None
    finally:
        stop_and_check_clean(other)


def test_benchmark_load_generator_measures_this_server(server: Server, tmp_path: Path) -> None:
    import asyncio
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import loadgen

    image = tmp_path / "red.png"
    solid(COLORS["red"]).save(image)
    body = loadgen.request_body(image, visualize=False)
    closed = asyncio.run(loadgen.closed_loop(server.url, body, concurrency=4, duration_s=1.0, warmup_s=0.2))
    assert closed.requests > 0 and closed.errors == 0
    assert closed.p50_ms <= closed.p99_ms and closed.mean_batch is not None and closed.mean_batch >= 1
    opened = asyncio.run(loadgen.open_loop(server.url, body, rate=20, duration_s=1.0))
    assert opened.requests == 20 and opened.errors == 0
