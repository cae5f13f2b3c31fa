"""--use_hpip: paddle2onnx conversion, its cache, ONNX Runtime, and GPU placement."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    COLORS,
    Server,
    image_b64,
    solid,
    start_server,
    stop_and_check_clean,
    write_config,
)
from test_lifecycle import assert_one_line_error, maps, run_cli

from pxserve.shared.cache import onnx_model_path
from pxserve.shared.config import ConfigError, parse_hpi_config
from pxserve.shared.devices import Device, gpu_usable
from pxserve.shared.model_dir import ModelDir


def convert(model_dir: Path) -> Path:
    target = onnx_model_path(ModelDir.load(model_dir))
    if not target.is_file():
        subprocess.run(
            [sys.executable, "-m", "pxserve.workers.onnx_convert", str(model_dir), str(target)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return target


def test_both_backends_give_the_same_answers(tiny_model_dir: Path, cache_dir: Path) -> None:
    from pxserve.workers.backends import BackendOptions, create_backend

    model = ModelDir.load(tiny_model_dir)
    onnx_path = str(convert(tiny_model_dir))
    paddle = create_backend(model, BackendOptions(Device("cpu"), 1, "paddle"))
    onnx = create_backend(model, BackendOptions(Device("cpu"), 1, "onnxruntime", onnx_path))
    batch = np.random.default_rng(3).uniform(0, 1, size=(5, 3, 32, 32)).astype(np.float32)
    ours, theirs = paddle.infer(batch), onnx.infer(batch)
    assert ours.shape == theirs.shape == (5, 3)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert (ours.argsort(axis=1) == theirs.argsort(axis=1)).all()


def test_conversion_is_keyed_by_the_model_files(
    tiny_model_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert onnx_model_path(ModelDir.load(copy)) == onnx_model_path(ModelDir.load(tiny_model_dir))
    (copy / "inference.pdiparams").write_bytes((copy / "inference.pdiparams").read_bytes() + b"\0")
    assert onnx_model_path(ModelDir.load(copy)) != onnx_model_path(ModelDir.load(tiny_model_dir))


def test_hpi_config_is_read_like_paddlex() -> None:
    assert parse_hpi_config(None).backend == "onnxruntime"
    config = parse_hpi_config("{'backend': 'paddle', 'backend_config': {'cpu_num_threads': 2}}")
    assert config.backend == "paddle" and config.cpu_threads == 2
    with pytest.raises(ConfigError, match=r"backend: Input should be"):
        parse_hpi_config("{'backend': 'openvino'}")
    with pytest.raises(ConfigError, match=r"must be a dict"):
        parse_hpi_config("[1, 2]")


@pytest.fixture(scope="module")
def hpip_server(tiny_model_dir: Path, work_dir: Path, cache_dir: Path) -> Server:
    config = write_config(work_dir, tiny_model_dir, serving={"instances_per_device": 2})
    running = start_server(config, work_dir, "--use_hpip")
    yield running
    stop_and_check_clean(running)


def test_hpip_server_answers_correctly_on_onnxruntime(hpip_server: Server) -> None:
    for name, color in COLORS.items():
        result = hpip_server.classify({"image": image_b64(solid(color))}).json()["result"]
        assert result["categories"][0]["name"] == name
    workers = hpip_server.workers()
    assert workers and all("onnxruntime" in maps(pid) for pid in workers)
    assert not any("libpaddle" in maps(pid) for pid in workers)  # no Paddle where it is not used
    assert re.search(r"loaded TinyColorNet on cpu with onnxruntime", hpip_server.logs())


def test_second_start_reuses_the_conversion(
    hpip_server: Server, tiny_model_dir: Path, work_dir: Path
) -> None:
    config = write_config(work_dir, tiny_model_dir, serving={"instances_per_device": 1})
    again = start_server(config, work_dir, "--use_hpip")
    try:
        assert "using the cached ONNX conversion" in again.logs()
        assert "converting" not in again.logs()
        assert again.classify({"image": image_b64(solid(COLORS["red"]))}).status_code == 200
    finally:
        stop_and_check_clean(again)


def test_hpi_config_can_choose_paddle(tiny_model_dir: Path, work_dir: Path) -> None:
    config = write_config(work_dir, tiny_model_dir, serving={"instances_per_device": 1})
    server = start_server(config, work_dir, "--use_hpip", "--hpi_config", "{'backend': 'paddle'}")
    try:
        assert "with paddle" in server.logs()
        assert server.classify({"image": image_b64(solid(COLORS["green"]))}).status_code == 200
    finally:
        stop_and_check_clean(server)


def test_unconvertible_model_fails_at_startup_naming_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "inference.pdiparams").write_bytes(b"not weights")
    config = write_config(tmp_path, broken)
    result = run_cli(
        "--serve", "--pipeline", str(config), "--device", "cpu", "--port", "0", "--use_hpip", cwd=tmp_path
    )
    assert_one_line_error(result, "--use_hpip: cannot convert TinyColorNet to ONNX:")


needs_gpu = pytest.mark.skipif(not gpu_usable(False), reason="no usable GPU with paddlepaddle-gpu")
needs_ort_gpu = pytest.mark.skipif(not gpu_usable(True), reason="no usable GPU with onnxruntime-gpu")


@pytest.mark.gpu
@needs_gpu
def test_paddle_on_gpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    server = start_server(config, tmp_path, "--device", "gpu:0")
    try:
        result = server.classify({"image": image_b64(solid(COLORS["blue"]))}).json()["result"]
        assert result["categories"][0]["name"] == "blue"
        assert "(gpu:0) ready" in server.logs()
    finally:
        stop_and_check_clean(server)


@pytest.mark.gpu
@needs_ort_gpu
def test_onnxruntime_cuda_on_gpu(tiny_model_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    server = start_server(config, tmp_path, "--device", "gpu:0", "--use_hpip")
    try:
        result = server.classify({"image": image_b64(solid(COLORS["red"]))}).json()["result"]
        assert result["categories"][0]["name"] == "red"
        assert "on gpu:0 with onnxruntime" in server.logs()
    finally:
        stop_and_check_clean(server)
