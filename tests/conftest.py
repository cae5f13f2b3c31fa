"""Fixtures that start the real server as a child process and talk HTTP to it."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from PIL import Image

TESTS = Path(__file__).parent
DATA = TESTS / "data"
sys.path.insert(0, str(TESTS))

import tiny_model  # noqa: E402

STARTUP_DEADLINE_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def image_b64(image: Image.Image, fmt: str = "JPEG", **save: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def file_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def wait_until(predicate: Callable[[], Any], deadline_s: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def metric(server: Server, name: str) -> float:
    """One sample of /metrics, by its name and labels (0 when it has none yet).

    A name without labels sums the samples of every label set (every pipeline).
    """
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    if "{" in name:
        found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0
    values = re.findall(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return sum(float(v) for v in values)


def send_whole(port: int, path: str, payload: dict[str, Any]) -> socket.socket:
    """Send a whole JSON request and return the socket, unanswered (close it to hang up)."""
    body = json.dumps(payload).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def ring_files(pid: int) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(f"pxserve-{pid}-*"))


def write_config(
    folder: Path, model_dir: Path | None, serving: dict[str, Any] | None = None, **model: Any
) -> Path:
    sub = {"module_name": "image_classification", "model_name": "EfficientNet-Lite0", "model_dir": None}
    if model_dir is not None:
        sub.update(model_name="TinyColorNet", model_dir=str(model_dir))
    sub.update(model)
    config = {
        "pipeline_name": "image_classification",
        "SubModules": {"ImageClassification": sub},
        "Serving": {"visualize": False, **(serving or {})},
    }
    path = folder / f"pipeline-{len(list(folder.glob('pipeline-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def classify(self, payload: dict[str, Any], timeout: float = 60) -> requests.Response:
        return requests.post(f"{self.url}/image-classification", json=payload, timeout=timeout)

    def workers(self) -> list[int]:
        """Worker processes (not multiprocess's resource tracker)."""
        found = []
        for pid in children_of(self.pid):
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                continue
        return found

    def exit_code(self, timeout: float = 120) -> int:
        """Wait for a server that should stop by itself; never leave one running."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the server did not exit within {timeout} s:\n{self.logs()}") from None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.stopped = True
        return code


def start_server(
    pipeline: str | Path,
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait: bool = True,
    preexec_fn: Callable[[], Any] | None = None,
) -> Server:
    port = free_port()
    log_path = tmp / f"server-{port}.log"
    command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", str(pipeline)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=tmp,
            preexec_fn=preexec_fn,
        )  # fmt: skip
    server = Server(process, port, log_path)
    if wait:
        try:
            wait_for_health(server)
        except BaseException:
            server.stop()  # never leave a half-started server (and its workers) behind
            raise
    return server


def wait_for_health(server: Server) -> None:
    def healthy() -> bool:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.logs()}")
        try:
            return requests.get(f"{server.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, STARTUP_DEADLINE_S, "the server to become healthy", interval=0.2)


def stop_and_check_clean(server: Server) -> None:
    """SIGTERM, then: exit code 0, no worker left, no ring file left."""
    children = children_of(server.pid)
    code = server.stop()
    assert code == 0, server.logs()
    wait_until(lambda: not any(Path(f"/proc/{c}").exists() for c in children), 15, "child processes to exit")
    assert ring_files(server.pid) == []


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private model cache for every test, so none touches (or relies on) the user's."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["PXSERVE_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private data directory (jobs, files handed out by URL), so no test writes to the user's."""
    path = tmp_path_factory.mktemp("data")
    os.environ["PXSERVE_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model.build(tmp_path_factory.mktemp("tiny") / "TinyColorNet")


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


# Colours the tiny model names correctly, one per label.
COLORS = {"red": (210, 40, 30), "green": (30, 190, 60), "blue": (40, 50, 220)}


def solid(color: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> Image.Image:
    return Image.new("RGB", size, color)
