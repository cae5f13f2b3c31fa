"""Startup errors, process layout, idle cost, shutdown and worker faults."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import tiny_model
from conftest import (
    Server,
    children_of,
    image_b64,
    ring_files,
    solid,
    start_server,
    stop_and_check_clean,
    wait_until,
    write_config,
)

from pxserve.shared.devices import gpu_usable

RED = image_b64(solid((220, 30, 30)))


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pxserve", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})},
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("pxserve: error:")]
    assert len(errors) == 1, result.stderr
    assert pattern in errors[0], errors[0]


def test_startup_errors_are_one_clear_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert_one_line_error(run_cli("--serve", "--pipeline", "nope", cwd=tmp_path), "unknown pipeline 'nope'")
    assert_one_line_error(run_cli("--pipeline", "image_classification", cwd=tmp_path), "pass --serve")
    missing = write_config(tmp_path, tmp_path / "no-such-model")
    assert_one_line_error(
        run_cli("--serve", "--pipeline", str(missing), "--device", "cpu", "--port", "0", cwd=tmp_path),
        "does not exist",
    )
    bad_hpi = run_cli("--serve", "--pipeline", "image_classification", "--hpi_config", "{oops", cwd=tmp_path)
    assert_one_line_error(bad_hpi, "--hpi_config must be a Python dict literal")
    unreadable = run_cli("--serve", "--pipeline", str(tmp_path / "absent.yaml"), cwd=tmp_path)
    assert_one_line_error(unreadable, "cannot read pipeline config")


def test_paddlex_37_names_pxserve_does_not_serve_are_one_line_naming_what_it_does(tmp_path: Path) -> None:
    """PaddleX 3.7's vision-language pipelines and its other engines: why not, and what instead."""
    for name in ("PaddleOCR-VL-1.6", "PaddleOCR-VL-1.5", "PaddleOCR-VL"):
        result = run_cli("--serve", "--pipeline", name, cwd=tmp_path)
        assert_one_line_error(result, f"{name} needs a vision-language model")
        assert "serve PP-StructureV3" in result.stderr
    for engine in ("transformers", "genai_client", "paddle_dynamic", "flexible"):
        result = run_cli("--serve", "--pipeline", "image_classification", "--engine", engine, cwd=tmp_path)
        assert_one_line_error(result, f"--engine {engine}:")
        assert "it serves paddle_static, hpi, onnxruntime" in result.stderr
    typo = run_cli("--serve", "--pipeline", "image_classification", "--engine", "onnx", cwd=tmp_path)
    assert_one_line_error(typo, "--engine must be one of paddle_static, hpi, onnxruntime")
    serve = ("--serve", "--pipeline", "image_classification")
    both = run_cli(*serve, "--engine", "paddle_static", "--use_hpip", cwd=tmp_path)
    assert_one_line_error(both, "--engine paddle_static runs Paddle Inference, but --use_hpip")


def test_engine_flag_and_yaml_key_choose_the_backend(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A YAML ``engine: hpi`` runs ONNX Runtime, as --use_hpip; ``--engine`` overrides it."""
    config = write_config(tmp_path, tiny_model_dir)
    yaml_hpi = tmp_path / "engine-hpi.yaml"
    yaml_hpi.write_text(config.read_text() + "engine: hpi\n")
    for pipeline, flags, backend in (
        (yaml_hpi, [], "onnxruntime"),
        (yaml_hpi, ["--engine", "paddle_static"], "paddle"),
    ):
        server = start_server(pipeline, tmp_path, *flags)
        try:
            body = {"image": RED}
            answer = requests.post(f"{server.url}/image-classification", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["result"]["categories"][0]["name"] == "red"
            assert f"engine: {backend}" in server.logs()
            assert f"loaded TinyColorNet on cpu with {backend}" in server.logs()
        finally:
            stop_and_check_clean(server)


def test_busy_port_fails_fast_and_licence_flags_are_accepted(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = run_cli(
            "--serve", "--pipeline", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--device", "cpu", "--serial_number", "ABC", "--update_license", cwd=tmp_path,
        )  # fmt: skip
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}")
    assert time.monotonic() - started < 60  # before any model loads
    assert "needs no licence" in result.stderr


def test_paddlex_install_step_is_accepted_and_says_nothing_is_needed(tmp_path: Path) -> None:
    result = run_cli("--install", "serving", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "pxserve: nothing to install for serving: serving is built in"


def test_prepare_builds_the_onnx_conversion_into_the_cache_and_exits(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """What a container image runs at build time, so it can start read-only."""
    config = write_config(tmp_path, tiny_model_dir)
    cache = {"PXSERVE_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli("--prepare", "--pipeline", str(config), "--use_hpip", cwd=tmp_path, env=cache)
    assert first.returncode == 0, first.stderr
    assert "converted in" in first.stderr
    assert len(list((tmp_path / "cache").glob("onnx/TinyColorNet-*/inference.onnx"))) == 1
    again = run_cli("--prepare", "--pipeline", str(config), "--use_hpip", cwd=tmp_path, env=cache)
    assert again.returncode == 0 and "using the cached ONNX conversion" in again.stderr
    assert "listening" not in first.stderr + again.stderr  # no port, no workers
    assert_one_line_error(run_cli("--prepare", cwd=tmp_path), "--prepare needs --pipeline")


@pytest.mark.slow
def test_prepare_all_builds_every_shipped_pipelines_embedded_models(tmp_path: Path) -> None:
    """The image's build step names no pipeline: a new one is prepared by itself."""
    from pxserve.shared.config import builtin_pipelines, load_pipeline_config

    cache = {"PXSERVE_CACHE_DIR": str(tmp_path / "cache")}
    result = run_cli("--prepare", "--pipeline", "all", cwd=tmp_path, env=cache, timeout=600)
    assert result.returncode == 0, result.stderr
    for name in builtin_pipelines():
        pipeline_name = load_pipeline_config(name).pipeline_name
        assert f"INFO {pipeline_name} model " in result.stderr
    built = {p.name.rsplit("-v", 1)[0] for p in (tmp_path / "cache" / "models").iterdir()}
    assert {
        "EfficientNet-Lite0", "PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec", "PP-OCRv5_mobile_det",
        "PP-OCRv5_mobile_rec", "SLANet_plus", "PicoDet_LCNet_x1_0_layout_cdla", "PP-LCNet_x1_0_doc_ori",
        "PP-OCRv4_mobile_seal_det", "PP-OCRv6_small_det", "PP-OCRv6_small_rec",
    } <= built  # fmt: skip


def test_a_model_that_cannot_load_stops_startup_cleanly(tmp_path: Path, tiny_model_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "inference.pdiparams").write_bytes(b"not weights")
    config = write_config(tmp_path, broken, serving={"instances_per_device": 2})
    server = start_server(config, tmp_path, wait=False)
    code = server.exit_code()
    logs = server.logs()
    assert code == 1, logs
    assert "Traceback" not in logs
    assert re.search(
        r"pxserve: error: worker \d \(cpu\) could not start: .*Paddle Inference could not load", logs
    )
    assert "restarting" not in logs
    assert ring_files(server.pid) == []
    wait_until(lambda: not children_of(server.pid), 15, "children to exit")


def test_a_model_that_loads_but_cannot_run_stops_startup(tmp_path: Path) -> None:
    broken = tiny_model.build_mismatched(tmp_path / "FlatNet")
    server = start_server(write_config(tmp_path, broken, model_name="FlatNet"), tmp_path, wait=False)
    code = server.exit_code()
    logs = server.logs()
    assert code == 1, logs
    assert re.search(r"pxserve: error: worker \d \(cpu\) could not start: .*warm-up inference", logs), logs
    assert "inference failed for one image: InvalidArgumentError" in logs  # the engine's reason, in one line
    assert ring_files(server.pid) == []


@pytest.mark.skipif(gpu_usable(False), reason="this machine has a usable GPU")
def test_asking_for_a_gpu_without_one_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    result = run_cli("--serve", "--pipeline", str(config), "--device", "gpu:0", cwd=tmp_path)
    assert_one_line_error(result, "no usable GPU")


@pytest.fixture
def server(tiny_model_dir: Path, tmp_path: Path) -> Server:
    config = write_config(tmp_path, tiny_model_dir, serving={"instances_per_device": 2})
    running = start_server(config, tmp_path)
    yield running
    if not running.stopped:
        stop_and_check_clean(running)


def maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_front_never_loads_an_engine_and_workers_do(server: Server) -> None:
    assert server.classify({"image": RED}).status_code == 200
    front = maps(server.pid)
    assert "paddle" not in front and "onnxruntime" not in front
    workers = server.workers()
    assert len(workers) == 2
    assert all("libpaddle" in maps(pid) for pid in workers)


def test_idle_server_uses_no_cpu(server: Server) -> None:
    assert server.classify({"image": RED}).status_code == 200
    pids = [server.pid, *server.workers()]
    before = sum(cpu_seconds(pid) for pid in pids)
    time.sleep(3.0)  # measuring idleness over a fixed window is the point here
    used = sum(cpu_seconds(pid) for pid in pids) - before
    assert used < 0.15, f"idle server used {used:.2f} CPU-seconds in 3 s"


def test_sigterm_drains_in_flight_requests_and_leaves_nothing(server: Server) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(server.classify, {"image": RED}) for _ in range(32)]
        wait_until(lambda: "batch" in server.logs() or any(f.done() for f in futures), 30, "work to start")
        workers = server.workers()
        server.process.send_signal(signal.SIGTERM)
        statuses = []
        for future in futures:
            try:
                statuses.append(future.result().status_code)
            except Exception:  # refused after the listener closed: never admitted
                statuses.append(None)
    assert server.process.wait(timeout=60) == 0
    server.stopped = True
    assert all(status in (200, None) for status in statuses), statuses
    assert statuses.count(200) >= 1
    wait_until(lambda: not any(Path(f"/proc/{w}").exists() for w in workers), 15, "workers to exit")
    assert ring_files(server.pid) == []


def test_ctrl_c_stops_cleanly(server: Server) -> None:
    workers = server.workers()
    assert server.stop(signal.SIGINT) == 0
    assert "stopped" in server.logs()
    wait_until(lambda: not any(Path(f"/proc/{w}").exists() for w in workers), 15, "workers to exit")


def test_killed_worker_is_replaced_and_service_continues(server: Server) -> None:
    victim = server.workers()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len([w for w in server.workers() if w != victim]) == 2, 60, "a replacement worker")
    wait_until(lambda: server.logs().count(" ready (pid") >= 3, 60, "the replacement to load its model")
    for _ in range(6):
        response = server.classify({"image": RED})
        assert response.status_code == 200
        assert response.json()["result"]["categories"][0]["name"] == "red"
    assert "exited" in server.logs() and "restarting worker" in server.logs()
    import requests

    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert "pxserve_worker_restarts_total 1.0" in metrics


def test_workers_exit_when_the_front_dies(server: Server) -> None:
    workers = server.workers()
    assert workers
    server.process.kill()
    server.process.wait(timeout=30)
    server.stopped = True
    wait_until(lambda: not any(Path(f"/proc/{w}").exists() for w in workers), 30, "orphaned workers to exit")


def test_health_says_not_ready_until_workers_have_loaded(tiny_model_dir: Path, tmp_path: Path) -> None:
    import requests

    config = write_config(tmp_path, tiny_model_dir, serving={"instances_per_device": 2})
    server = start_server(config, tmp_path, wait=False)
    seen: list[tuple[int, str]] = []
    alive_while_loading: list[int] = []  # /livez: what a liveness probe sees meanwhile

    def observe() -> bool:
        try:
            response = requests.get(f"{server.url}/health", timeout=2)
            if response.status_code == 503:
                alive_while_loading.append(requests.get(f"{server.url}/livez", timeout=2).status_code)
        except requests.RequestException:
            return False
        seen.append((response.status_code, response.json()["errorMsg"]))
        return response.status_code == 200

    try:
        wait_until(observe, 120, "the server to become ready", interval=0.05)
        assert seen[0][0] == 503 and seen[0][1].startswith("Not ready"), seen[:3]
        assert seen[-1] == (200, "Healthy")
        assert alive_while_loading and set(alive_while_loading) == {200}
        assert server.classify({"image": RED}).status_code == 200
    finally:
        stop_and_check_clean(server)


def test_every_request_gets_an_access_log_line_with_its_log_id(server: Server) -> None:
    response = server.classify({"image": RED})
    log_id = response.json()["logId"]

    def access_line() -> str | None:
        return next((ln for ln in server.logs().splitlines() if f"logId={log_id}" in ln), None)

    line = wait_until(access_line, 10, "the access log line")
    assert '"POST /image-classification" 200' in line


COLOR_OF = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
PAYLOADS = {name: image_b64(solid(color)) for name, color in COLOR_OF.items()}


def ask_many(server: Server, count: int, workers: int = 12) -> list[tuple[str, int, str | None]]:
    """Concurrent requests of known colours: (expected, status, answered name)."""
    names = [list(COLOR_OF)[i % 3] for i in range(count)]

    def ask(name: str) -> tuple[str, int, str | None]:
        response = server.classify({"image": PAYLOADS[name], "topk": 1}, timeout=60)
        top = response.json()["result"]["categories"][0]["name"] if response.status_code == 200 else None
        return name, response.status_code, top

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(ask, names))


def test_sigkill_under_load_loses_nothing_and_mixes_nothing(server: Server) -> None:
    victim = server.workers()[0]
    with ThreadPoolExecutor(max_workers=1) as killer:
        kill = killer.submit(lambda: (time.sleep(0.3), os.kill(victim, signal.SIGKILL)))
        answers = ask_many(server, 300)
        kill.result()
    unexpected = [answer for answer in answers if answer[1] not in (200, 503)]
    assert not unexpected, (unexpected, server.logs()[-4000:])  # say which, and what the server saw
    assert all(top == expected for expected, status, top in answers if status == 200)
    assert sum(status == 200 for _, status, _ in answers) >= 290  # retried, not dropped
    wait_until(lambda: "restarting worker" in server.logs(), 30, "the restart")


def test_a_stuck_worker_is_noticed_and_replaced(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, tiny_model_dir, serving={"instances_per_device": 2, "worker_stall_timeout_s": 2}
    )
    server = start_server(config, tmp_path)
    try:
        stuck = server.workers()[0]
        os.kill(stuck, signal.SIGSTOP)  # as stuck as a native deadlock: alive, silent
        started = time.monotonic()
        answers = ask_many(server, 24, workers=8)
        assert all(status == 200 and top == expected for expected, status, top in answers), answers
        assert time.monotonic() - started < 30
        assert "sent no heartbeat" in server.logs()
        wait_until(lambda: stuck not in server.workers(), 10, "the stuck worker to be reaped")
    finally:
        stop_and_check_clean(server)


def test_an_idle_stuck_worker_is_replaced_before_work_reaches_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import requests

    config = write_config(
        tmp_path, tiny_model_dir, serving={"instances_per_device": 1, "worker_stall_timeout_s": 2}
    )
    server = start_server(config, tmp_path)
    try:
        stuck = server.workers()[0]
        os.kill(stuck, signal.SIGSTOP)  # no request in flight: only a heartbeat can tell
        wait_until(lambda: "sent no heartbeat" in server.logs(), 15, "the watchdog to notice")
        assert "holding 0 request(s)" in server.logs()
        wait_until(lambda: "restarting worker" in server.logs(), 15, "the killed worker to be reaped")
        health = f"{server.url}/health"  # 503 until the replacement has loaded the model
        wait_until(lambda: requests.get(health, timeout=5).status_code == 200, 60, "the replacement")
        assert stuck not in server.workers()
        response = server.classify({"image": RED})
        assert response.status_code == 200 and response.json()["result"]["categories"][0]["name"] == "red"
    finally:
        stop_and_check_clean(server)


def test_idle_workers_are_not_mistaken_for_stuck_ones(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, tiny_model_dir, serving={"instances_per_device": 2, "worker_stall_timeout_s": 1}
    )
    server = start_server(config, tmp_path)
    try:
        workers = server.workers()
        deadline = time.monotonic() + 4  # four watchdog rounds, each past the 1 s limit if beats stopped
        while time.monotonic() < deadline:
            assert server.process.poll() is None
            assert "sent no heartbeat" not in server.logs()
            time.sleep(0.2)  # polling interval, not synchronisation
        assert server.workers() == workers
    finally:
        stop_and_check_clean(server)


def test_request_past_its_deadline_gets_504_and_the_server_recovers(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    serving = {"instances_per_device": 1, "request_timeout_s": 1, "worker_stall_timeout_s": 60}
    server = start_server(write_config(tmp_path, tiny_model_dir, serving=serving), tmp_path)
    try:
        worker = server.workers()[0]
        os.kill(worker, signal.SIGSTOP)
        started = time.monotonic()
        response = server.classify({"image": RED})
        assert response.status_code == 504 and "deadline" in response.json()["errorMsg"]
        assert time.monotonic() - started < 5
        os.kill(worker, signal.SIGCONT)
        wait_until(
            lambda: server.classify({"image": RED}).status_code == 200, 30, "the worker to answer again"
        )
    finally:
        stop_and_check_clean(server)
