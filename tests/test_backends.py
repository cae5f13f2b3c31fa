"""Backends run models with several inputs and outputs, on both engines, with the same answers.

The model is a tiny real export shaped like PaddleX's detectors (image,
im_shape, scale_factor in; boxes and a box count out), run by Paddle
Inference and, converted by paddle2onnx, by ONNX Runtime.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tiny_model

from pxserve.shared.devices import Device
from pxserve.shared.model_dir import ModelDir
from pxserve.workers.backends import BackendError, BackendOptions, MeteredBackend, create_backend


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelDir, str]:
    folder = tmp_path_factory.mktemp("detector")
    model_dir = tiny_model.build_detector(folder / "TinyDetector")
    onnx = folder / "onnx" / "model.onnx"  # a keyed folder of its own, as the cache lays it out
    command = [sys.executable, "-m", "pxserve.workers.onnx_convert", str(model_dir), str(onnx)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return ModelDir.load(model_dir), str(onnx)


def inputs() -> dict[str, np.ndarray]:
    image = np.stack([np.full((3, 64, 96), 0.25, np.float32), np.full((3, 64, 96), 0.75, np.float32)])
    im_shape = np.array([[64, 96], [64, 96]], np.float32)
    scale_factor = np.array([[0.5, 0.5], [0.25, 0.5]], np.float32)  # (y, x) scale of each resize
    return {"image": image, "im_shape": im_shape, "scale_factor": scale_factor}


@pytest.mark.parametrize("engine", ["paddle", "onnxruntime"])
def test_a_model_with_three_inputs_and_two_outputs_runs(engine: str, detector: tuple[ModelDir, str]) -> None:
    model, onnx = detector
    backend = MeteredBackend(create_backend(model, BackendOptions(Device("cpu"), 1, engine, onnx)), "det")
    assert backend.input_names == ["image", "im_shape", "scale_factor"]
    assert len(backend.output_names) == 2
    boxes, count = backend.run(inputs())
    np.testing.assert_allclose(
        boxes, [[0, 0.25, 0, 0, 192, 128], [0, 0.75, 0, 0, 192, 256]], rtol=1e-5
    )  # width 96 / 0.5, height 64 / 0.5 and 64 / 0.25
    assert count.tolist() == [1, 1] and count.dtype == np.int32
    assert backend.take_batch_sizes() == [2]


@pytest.mark.parametrize("engine", ["paddle", "onnxruntime"])
def test_missing_or_unknown_inputs_are_named(engine: str, detector: tuple[ModelDir, str]) -> None:
    model, onnx = detector
    backend = create_backend(model, BackendOptions(Device("cpu"), 1, engine, onnx))
    given = inputs()
    del given["scale_factor"]
    with pytest.raises(BackendError, match="scale_factor"):
        backend.run(given)


def test_engines_agree(detector: tuple[ModelDir, str]) -> None:
    model, onnx = detector
    paddle_out = create_backend(model, BackendOptions(Device("cpu"), 1, "paddle")).run(inputs())
    ort_out = create_backend(model, BackendOptions(Device("cpu"), 1, "onnxruntime", onnx)).run(inputs())
    for ours, theirs in zip(paddle_out, ort_out, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_memory_goes_back_after_a_large_call_of_a_new_shape_only() -> None:
    from pxserve.workers.backends import RELEASE_ABOVE_VALUES, ReleasePolicy

    policy = ReleasePolicy()
    line = np.zeros((6, 3, 48, 320), np.float32)
    page = np.zeros((1, 3, 1632, 1280), np.float32)
    other_page = np.zeros((1, 3, 1280, 1632), np.float32)
    assert line.size < RELEASE_ABOVE_VALUES <= page.size
    assert [policy.release_after([line]) for _ in range(3)] == [False] * 3  # small calls keep theirs
    assert policy.release_after([page])  # a first page: its memory goes back
    assert not policy.release_after([page]) and not policy.release_after([line])  # the same shape keeps it
    assert policy.release_after([other_page])  # another shape: back again
    assert policy.release_after([page])
    assert policy.release_after([page, np.zeros((1, 2), np.float32)])  # shapes of every input count


def test_on_a_crowded_machine_every_large_call_gives_its_memory_back() -> None:
    from pxserve.workers.backends import ReleasePolicy

    policy = ReleasePolicy()
    line = np.zeros((6, 3, 48, 320), np.float32)
    page = np.zeros((1, 3, 1632, 1280), np.float32)
    assert policy.release_after([page]) and not policy.release_after([page])  # alone: the shape is kept
    assert policy.release_after([page], crowded=True)  # beside other workers: back, the same shape too
    assert policy.release_after([page], crowded=True)
    assert not policy.release_after([line], crowded=True)  # small calls keep theirs
    assert policy.release_after([page])  # alone again: what the crowded call had is gone, keep anew
    assert not policy.release_after([page])


def test_an_onnx_runtime_call_is_crowded_when_no_idle_cores_were_lent_to_it(
    detector: tuple[ModelDir, str],
) -> None:
    model, onnx = detector
    lent = create_backend(model, BackendOptions(Device("cpu"), 1, "onnxruntime", onnx, thread_counts=(1, 2)))
    assert lent._crowded(1) and not lent._crowded(2)  # its own core only / the other worker's too
    assert not lent._crowded(None)  # not called through the worker's cores
    alone = create_backend(model, BackendOptions(Device("cpu"), 2, "onnxruntime", onnx))
    assert not alone._crowded(2)  # a worker owning every core has no others
