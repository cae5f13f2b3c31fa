"""The container image, run as users run it. Skipped without Docker or the image.

CI builds no images (too slow for it); build one with deploy/build-image.sh
and these run against ``pxserve:latest`` (or ``$PXSERVE_IMAGE``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import DATA, file_b64, free_port, wait_until

IMAGE = os.environ.get("PXSERVE_IMAGE", "pxserve:latest")
DOCKER = shutil.which("docker")


def _image_available() -> bool:
    if DOCKER is None:
        return False
    try:
        found = subprocess.run([DOCKER, "image", "inspect", IMAGE], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return found.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _image_available(), reason=f"no Docker daemon or no image {IMAGE}"),
]


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)  # type: ignore[list-item]


class Container:
    def __init__(self, *run_args: str, command: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        started = docker("run", "-d", "-p", f"127.0.0.1:{self.port}:8080", *run_args, IMAGE, *command)
        assert started.returncode == 0, started.stderr
        self.id = started.stdout.strip()
        self.url = f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        result = docker("logs", self.id)
        return result.stdout + result.stderr

    def state(self, field: str) -> str:
        return docker("inspect", "--format", f"{{{{{field}}}}}", self.id).stdout.strip()

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def remove(self) -> None:
        docker("rm", "-f", self.id)


def test_image_serves_read_only_as_non_root_and_drains_on_docker_stop() -> None:
    container = Container("--read-only", "--shm-size", "256m", "--cpus", "2")
    try:
        wait_until(container.healthy, 180, "the container to be ready", interval=0.5)
        assert docker("exec", container.id, "id", "-u").stdout.strip() == "10001"
        payload = {"image": file_b64(DATA / "chelsea.jpg"), "topk": 1}
        answer = requests.post(f"{container.url}/image-classification", json=payload, timeout=30)
        assert answer.status_code == 200
        assert answer.json()["result"]["categories"][0]["name"] == "tabby, tabby cat"
        # Docker's own HEALTHCHECK (every 10 s) agrees.
        wait_until(lambda: container.state(".State.Health.Status") == "healthy", 60, "HEALTHCHECK")

        def ask() -> int:
            url = f"{container.url}/image-classification"
            return requests.post(url, json=payload, timeout=60).status_code

        with ThreadPoolExecutor(8) as pool:
            in_flight = [pool.submit(ask) for _ in range(64)]
            wait_until(lambda: any(f.done() for f in in_flight), 30, "the first answers")
            stopped = docker("stop", "--time", "45", container.id, timeout=90)
            statuses = [f.result() if not f.exception() else None for f in in_flight]
        assert stopped.returncode == 0, stopped.stderr
        assert container.state(".State.ExitCode") == "0", container.logs()[-2000:]
        logs = container.logs()
        assert "draining" in logs and "stopped" in logs
        assert "Traceback" not in logs
        # Everything admitted before the stop was answered; later ones were refused.
        assert statuses.count(200) >= 1
        assert all(s in (200, None) for s in statuses), statuses
    finally:
        container.remove()


def test_dockers_default_shm_either_fits_or_stops_with_one_line() -> None:
    """Docker's /dev/shm is 64 MB unless --shm-size says otherwise."""
    two = Container("--cpus", "2")  # 2 workers: their smallest rings need ~73 MiB
    try:
        wait_until(lambda: two.state(".State.Status") == "exited", 120, "the container to stop")
        assert two.state(".State.ExitCode") == "1"
        errors = [ln for ln in two.logs().splitlines() if ln.startswith("pxserve: error:")]
        assert len(errors) == 1 and "--shm-size" in errors[0], two.logs()[-2000:]
        assert "Traceback" not in two.logs()
    finally:
        two.remove()
    one = Container("--cpus", "1")  # 1 worker: its rings shrink to fit, with a warning
    try:
        wait_until(one.healthy, 180, "the one-worker container to be ready", interval=0.5)
        assert "rings shrunk" in one.logs()
    finally:
        one.remove()


def test_the_image_holds_its_models_and_writes_nothing_at_startup(tmp_path: Path) -> None:
    """Read-only and no HOME: the embedded models and the ONNX conversion are in the image."""
    container = Container(
        "--read-only", "--shm-size", "256m", "--cpus", "1",
        command=("--serve", "--pipeline", "image_classification", "--use_hpip"),
    )  # fmt: skip
    try:
        wait_until(container.healthy, 180, "the --use_hpip container to be ready", interval=0.5)
        logs = container.logs()
        assert "using the cached ONNX conversion" in logs
        assert "building the embedded model" not in logs
        started = time.monotonic()
        answer = requests.post(
            f"{container.url}/image-classification",
            json={"image": file_b64(DATA / "coffee.jpg"), "topk": 1}, timeout=30,
        )  # fmt: skip
        assert answer.status_code == 200 and time.monotonic() - started < 30
        assert answer.json()["result"]["categories"][0]["name"] == "espresso"
    finally:
        container.remove()
