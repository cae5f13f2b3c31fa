"""/openapi.json is accurate: every route, and schemathesis finds no violation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import Server, start_server, stop_and_check_clean, write_config

from pxserve.frontend.app import create_app
from pxserve.frontend.jobs.routes import JOBS
from pxserve.frontend.metrics import Metrics
from pxserve.frontend.openapi import openapi_document
from pxserve.shared.config import load_pipeline_config
from pxserve.shared.pipelines import get_pipeline


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, work_dir: Path) -> Server:
    config = write_config(work_dir, tiny_model_dir, serving={"instances_per_device": 1})
    running = start_server(config, work_dir)
    yield running
    stop_and_check_clean(running)


@pytest.mark.parametrize(
    "names", [["image_classification"], ["image_classification", "OCR"], ["OCR", "PP-StructureV3"]]
)
def test_document_covers_exactly_the_served_routes(names: list[str]) -> None:
    pipelines = [get_pipeline(load_pipeline_config(name)) for name in names]
    serving = pipelines[0].config.Serving
    app = create_app(pipelines, serving, engine=None, telemetry=Metrics())  # type: ignore[arg-type]
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
    }
    jobs = JOBS in app  # OCR and PP-StructureV3 bring PaddleOCR's job API
    assert jobs == any(name in ("OCR", "PP-StructureV3") for name in names)
    document = openapi_document(pipelines, serving, secured=False, jobs=jobs)
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert served == documented
    assert {p.route for p in pipelines} <= {path for _, path in documented}
    secured = openapi_document(pipelines, serving, secured=True, jobs=jobs)
    assert secured["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for pipeline in pipelines:
        assert "401" in secured["paths"][pipeline.route]["post"]["responses"]
        ref = secured["paths"][pipeline.route]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert ref["$ref"].rsplit("/", 1)[1] in secured["components"]["schemas"]
    assert "401" not in secured["paths"]["/health"]["get"]["responses"]  # open by default


def test_served_document_is_valid_json_and_versioned(server: Server) -> None:
    document = requests.get(f"{server.url}/openapi.json", timeout=5).json()
    assert document["openapi"].startswith("3.1")
    assert "/image-classification" in document["paths"]


SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which(
    "schemathesis"
)


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is in the test extras; not installed")
def test_schemathesis_finds_no_violation(server: Server) -> None:
    cli = str(SCHEMATHESIS)
    # positive_data_acceptance is left out on purpose: schema-valid Base64 is
    # still, almost always, not an image, and must get a 422.
    result = subprocess.run(
        [cli, "run", f"{server.url}/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "-n", "60", "--generation-deterministic"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout
