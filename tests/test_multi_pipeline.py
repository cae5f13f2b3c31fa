"""Several pipelines behind one port, sharing every worker, and a pipeline built from pipelines.

Real servers with real models: the tiny colour classifier beside PaddleX's
OCR (two pipelines, given as repeated --pipeline), and a serving config
that adds ``ocr_side_by_side``, a plugin pipeline made of two OCR
sub-pipelines with their own models and settings (tests/plugins/), whose
answers must be OCR's: PaddleX's recorded ones, and /ocr's own with the
same settings.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pdfs
import pytest
import requests
import yaml
from conftest import (
    COLORS,
    TESTS,
    Server,
    image_b64,
    metric,
    solid,
    start_server,
    stop_and_check_clean,
    wait_until,
    write_config,
)
from PIL import Image
from test_ocr import DATA, assert_reads_like_paddlex, b64, b64_file, page_of, reference, write_ocr_config

SERVING = {"instances_per_device": 2, "cpu_threads": 1}
FLOOD = 6  # OCR requests in the flood, and OCR's queue_capacity on the two-pipeline server


@pytest.fixture(scope="module")
def two(tiny_model_dir: Path, work_dir: Path) -> Server:
    classify = write_config(work_dir, tiny_model_dir, serving=SERVING)
    # OCR's own admission places; the classifier keeps its default (256).
    ocr = write_ocr_config(work_dir, {**SERVING, "max_pdf_pages": 2, "queue_capacity": FLOOD})
    running = start_server(classify, work_dir, "--pipeline", str(ocr))
    yield running
    stop_and_check_clean(running)


def classify(server: Server, color: str = "red") -> requests.Response:
    return server.classify({"image": image_b64(solid(COLORS[color]))})


def test_each_pipeline_answers_on_its_own_route(two: Server) -> None:
    assert classify(two, "green").json()["result"]["categories"][0]["name"] == "green"
    response = requests.post(
        f"{two.url}/ocr", json={"file": b64_file(DATA / "page_region.jpg"), "useTextlineOrientation": False}
    )
    assert_reads_like_paddlex(page_of(response), reference("page_region.jpg"))
    health = requests.get(f"{two.url}/health", timeout=5).json()
    assert (health["errorCode"], health["errorMsg"]) == (0, "Healthy")
    paths = requests.get(f"{two.url}/openapi.json", timeout=5).json()["paths"]
    assert {"/image-classification", "/ocr"} <= set(paths)
    assert metric(two, 'pxserve_requests_total{pipeline="OCR",route="/ocr",status="200"}') >= 1
    labelled = (
        'pxserve_requests_total{pipeline="image_classification",route="/image-classification",status="200"}'
    )
    assert metric(two, labelled) >= 1
    assert metric(two, 'pxserve_batch_size_count{pipeline="OCR"}') >= 1
    assert "pxserve_queue_depth{pipeline=" in requests.get(f"{two.url}/metrics", timeout=5).text
    assert len(two.workers()) == 2  # one set of workers serves both pipelines


def test_a_flood_on_ocr_does_not_starve_classification(two: Server) -> None:
    """Classification requests sent while OCR is saturated are answered while OCR is still busy."""
    page = Image.open(DATA / "page_top.jpg")
    document = b64(pdfs.from_images([page, page]))
    flood, statuses = FLOOD, []

    def read() -> None:
        response = requests.post(f"{two.url}/ocr", json={"file": document}, timeout=300)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=read) for _ in range(flood)]
    for thread in threads:
        thread.start()
    depth = 'pxserve_queue_depth{pipeline="OCR"}'
    wait_until(lambda: metric(two, depth) == flood, 30, "the OCR flood to be admitted")
    full = requests.post(f"{two.url}/ocr", json={"file": document}, timeout=30)
    assert full.status_code == 503  # OCR's places are taken; the classifier's are its own
    waits = []
    for color in ("red", "green", "blue", "red", "green"):
        started = time.monotonic()
        response = classify(two, color)
        waits.append(time.monotonic() - started)
        assert response.json()["result"]["categories"][0]["name"] == color
    still_busy = metric(two, depth)
    for thread in threads:
        thread.join(timeout=300)
    print(f"classification waits under the OCR flood: {[round(w, 2) for w in waits]} s")
    assert statuses == [200] * flood
    assert still_busy >= 1, f"classification waited for the OCR queue to drain ({waits})"


def test_a_route_served_twice_is_a_one_line_startup_error(work_dir: Path) -> None:
    ocr = write_ocr_config(work_dir)
    command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", "OCR", "--pipeline", str(ocr)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "route /ocr is served twice" in result.stderr


# -- composition -------------------------------------------------------------
@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PYTHONPATH on which the plugin pipeline is installed (a dist-info with its entry point)."""
    site = tmp_path_factory.mktemp("plugin-site")
    info = site / "pxserve_test_pipelines-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pxserve-test-pipelines\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[pxserve.pipelines]\nocr_side_by_side = side_by_side_pipeline\n")
    return {"PYTHONPATH": f"{site}:{TESTS / 'plugins'}"}


def copied_ocr_models(folder: Path) -> dict[str, Path]:
    """The embedded detector and recognizer, copied: a sub-pipeline's own model directories."""
    from pxserve.frontend.server import prepare_model
    from pxserve.shared.config import load_pipeline_config
    from pxserve.shared.pipelines import get_pipeline

    ocr = get_pipeline(load_pipeline_config("OCR_PP-OCRv4"))
    copies = {}
    for key in ("TextDetection", "TextRecognition"):
        source = prepare_model(ocr, key).path
        copies[key] = Path(shutil.copytree(source, folder / f"copy-{key}", dirs_exist_ok=True))
    return copies


@pytest.fixture(scope="module")
def three(tiny_model_dir: Path, work_dir: Path, plugin_env: dict[str, str]) -> Server:
    folder = work_dir / "three"
    folder.mkdir()
    copies = copied_ocr_models(folder)
    side_by_side: dict[str, Any] = {
        "pipeline_name": "ocr_side_by_side",
        "SubPipelines": {
            # As PaddleX writes it: a sub-pipeline from a config file, with overrides...
            "First": {"pipeline_config_path": "OCR_PP-OCRv4", "use_textline_orientation": False},
            # ... or inline, with its own models and settings.
            "Second": {
                "pipeline_name": "OCR",
                "use_textline_orientation": False,
                "SubModules": {
                    "TextDetection": {
                        "model_name": "PP-OCRv4_mobile_det", "model_dir": str(copies["TextDetection"]),
                        "limit_side_len": 64, "limit_type": "min", "box_thresh": 0.95,
                    },
                    "TextRecognition": {
                        "model_name": "PP-OCRv4_mobile_rec", "model_dir": str(copies["TextRecognition"]),
                    },
                },
            },
        },
        "Serving": {"max_pdf_pages": 2},
    }  # fmt: skip
    (folder / "side.yaml").write_text(yaml.safe_dump(side_by_side))
    write_config(folder, tiny_model_dir).rename(folder / "classify.yaml")
    write_ocr_config(folder, {"max_pdf_pages": 2}).rename(folder / "ocr.yaml")
    serving = {"pipelines": ["classify.yaml", "ocr.yaml", "side.yaml"], "Serving": SERVING}
    (folder / "serving.yaml").write_text(yaml.safe_dump(serving))
    running = start_server(folder / "serving.yaml", folder, env=plugin_env)
    yield running
    stop_and_check_clean(running)


def side_by_side(server: Server, payload: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{server.url}/ocr-side-by-side", json=payload, timeout=180)
    assert response.status_code == 200, response.text[:500]
    return response.json()["result"]


@pytest.mark.slow
def test_a_composed_pipeline_reads_as_ocr_with_each_sub_pipelines_settings(three: Server) -> None:
    for name in ("page_region.jpg", "page_top.jpg"):  # page_top's 17 lines fan out in both namespaces
        result = side_by_side(three, {"file": b64_file(DATA / name)})
        first = result["first"]["ocrResults"][0]["prunedResult"]
        assert_reads_like_paddlex(first, reference(name))
        second = result["second"]["ocrResults"][0]["prunedResult"]
        assert second["text_det_params"]["box_thresh"] == 0.95
        same = {"file": b64_file(DATA / name), "textDetBoxThresh": 0.95, "useTextlineOrientation": False}
        plain = page_of(requests.post(f"{three.url}/ocr", json=same, timeout=180))
        assert (second["rec_texts"], second["dt_polys"]) == (plain["rec_texts"], plain["dt_polys"])
        assert len(second["dt_polys"]) < len(first["dt_polys"])


@pytest.mark.slow
def test_a_composed_pipeline_reads_pdfs_through_its_sub_pipelines_pages(three: Server) -> None:
    region = Image.open(DATA / "page_region.jpg")
    result = side_by_side(three, {"file": b64(pdfs.from_images([region, region, region]))})
    for part in ("first", "second"):
        assert result[part]["dataInfo"]["numPages"] == 2  # max_pdf_pages of the composed pipeline
        assert len(result[part]["ocrResults"]) == 2
    for first, second in zip(result["first"]["ocrResults"], result["second"]["ocrResults"], strict=True):
        assert any("MIME" in text for text in first["prunedResult"]["rec_texts"])
        assert second["prunedResult"]["text_det_params"]["box_thresh"] == 0.95  # Second's own setting
        assert len(second["prunedResult"]["dt_polys"]) < len(first["prunedResult"]["dt_polys"])


@pytest.mark.slow
def test_three_pipelines_share_the_workers_and_models_load_once(three: Server) -> None:
    assert classify(three, "blue").json()["result"]["categories"][0]["name"] == "blue"
    paths = requests.get(f"{three.url}/openapi.json", timeout=5).json()["paths"]
    assert {"/image-classification", "/ocr", "/ocr-side-by-side"} <= set(paths)
    assert requests.get(f"{three.url}/health", timeout=5).json()["errorMsg"] == "Healthy"
    metrics = requests.get(f"{three.url}/metrics", timeout=5).text
    for name in ("image_classification", "OCR", "ocr_side_by_side"):
        assert f'pxserve_queue_depth{{pipeline="{name}"}}' in metrics
    assert len(three.workers()) == 2
    # OCR and First name the same detector directory: one copy per worker; Second's is its own.
    loads = three.logs().count("loaded PP-OCRv4_mobile_det on cpu")
    assert loads == 2 * 2, three.logs()[-3000:]
    bad = requests.post(f"{three.url}/ocr-side-by-side", json={"file": b64(b"not an image")}, timeout=30)
    assert bad.status_code == 422
