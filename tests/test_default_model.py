"""The embedded default model: safe loading, faithful conversion, right answers.

Faithfulness is checked against an independent numpy forward pass of the
original weights (tests/reference_efficientnet.py), not against itself.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference_efficientnet as reference
from conftest import DATA, Server, file_b64, start_server, stop_and_check_clean

from pxserve.workers import default_model
from pxserve.workers.torch_legacy import UnsafePickleError, load_state_dict

pytestmark = pytest.mark.slow

CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}
CUP_CLASSES = {"espresso", "cup", "coffee mug"}


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    with default_model.weights_path().open("rb") as stream:
        return load_state_dict(stream)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run the first-use export exactly as the server does, in a child process."""
    target = tmp_path_factory.mktemp("export") / "EfficientNet-Lite0"
    result = subprocess.run(
        [sys.executable, "-m", "pxserve.workers.default_model", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return target, result.stderr


def test_reader_loads_every_tensor(weights: dict[str, np.ndarray]) -> None:
    assert len(weights) == 296
    assert weights["_fc.weight"].shape == (1000, 1280)
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert all(np.isfinite(v).all() for v in weights.values())


def test_reader_refuses_pickles_that_would_run_code() -> None:
    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    stream = io.BytesIO()
    for item in (0x1950A86A20F9469CFC6C, 1001, {}):
        pickle.dump(item, stream, protocol=2)
    pickle.dump({"x": Exploit()}, stream, protocol=2)
    stream.seek(0)
    with pytest.raises(UnsafePickleError, match=r"refusing to load global .*print"):
        load_state_dict(stream)


def test_export_reports_progress_and_writes_a_paddlex_model_dir(exported: tuple[Path, str]) -> None:
    target, progress = exported
    assert "[1/3]" in progress and "[3/3]" in progress and "done in" in progress
    for name in ("inference.json", "inference.pdiparams", "inference.yml"):
        assert (target / name).is_file()
    from pxserve.shared.model_dir import ModelDir

    model = ModelDir.load(target)
    labels = model.post_process("Topk")["label_list"]
    assert len(labels) == 1000 and labels[0].startswith("tench") and labels[967] == "espresso"


def test_both_engines_match_independent_numpy_reference(
    exported: tuple[Path, str], weights: dict[str, np.ndarray]
) -> None:
    from test_hpip import convert

    from pxserve.shared.devices import Device
    from pxserve.shared.model_dir import ModelDir
    from pxserve.workers.backends import BackendOptions, PaddleBackend, create_backend
    from pxserve.workers.preprocess import Preprocessor, decode_image

    model = ModelDir.load(exported[0])
    preprocess = Preprocessor(model.transform_ops)
    backend = PaddleBackend(model, BackendOptions(Device("cpu"), cpu_threads=2))
    onnx = create_backend(model, BackendOptions(Device("cpu"), 2, "onnxruntime", str(convert(exported[0]))))
    batch = np.stack(
        [preprocess(decode_image((DATA / n).read_bytes())) for n in ("chelsea.jpg", "coffee.jpg")]
    )
    served, onnx_served = backend.infer(batch), onnx.infer(batch)
    for row, onnx_row, image in zip(served, onnx_served, batch, strict=True):
        expected = reference.softmax(reference.logits(image, weights))
        for got in (row, onnx_row):  # Paddle Inference and ONNX Runtime alike
            assert np.abs(got - expected).max() < 1e-5  # measured: < 1e-6
            assert list(np.argsort(-got)[:5]) == list(np.argsort(-expected)[:5])


@pytest.fixture(scope="module")
def default_server(work_dir: Path, cache_dir: Path) -> Server:
    running = start_server("image_classification", work_dir)  # the README's command
    yield running
    stop_and_check_clean(running)


def test_default_pipeline_names_real_photos(default_server: Server) -> None:
    cat = default_server.classify({"image": file_b64(DATA / "chelsea.jpg")}).json()["result"]
    cup = default_server.classify({"image": file_b64(DATA / "coffee.jpg")}).json()["result"]
    assert cat["categories"][0]["name"] in CAT_CLASSES, cat["categories"]
    assert cup["categories"][0]["name"] in CUP_CLASSES, cup["categories"]
    assert cup["categories"][0]["score"] > 0.5
    assert len(cat["categories"]) == 5  # topk from the pipeline config
    assert cat["image"]  # Serving.visualize is on in the shipped config


def test_first_start_built_the_model_into_the_cache(default_server: Server, cache_dir: Path) -> None:
    assert "building the embedded model EfficientNet-Lite0" in default_server.logs()
    assert (default_model.model_dir(default_model.MODEL_NAME) / "inference.yml").is_file()
    assert str(cache_dir) in str(default_model.model_dir(default_model.MODEL_NAME))


def phone_photo(path: Path, seed: int = 0) -> bytes:
    """A 12-MP JPEG with sensor-like noise, made from a real photo."""
    from PIL import Image

    image = Image.open(path).convert("RGB").resize((4240, 2828), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 6, (2828, 4240, 3))
    pixels = (np.asarray(image, dtype=np.float32) + noise).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def test_reduced_jpeg_decoding_keeps_top1_on_phone_sized_photos(exported: tuple[Path, str]) -> None:
    from pxserve.shared.devices import Device
    from pxserve.shared.model_dir import ModelDir
    from pxserve.workers.backends import BackendOptions, PaddleBackend
    from pxserve.workers.preprocess import Preprocessor, decode_image

    model = ModelDir.load(exported[0])
    preprocess = Preprocessor(model.transform_ops)
    backend = PaddleBackend(model, BackendOptions(Device("cpu"), cpu_threads=2))
    for name in ("chelsea.jpg", "coffee.jpg"):
        data = phone_photo(DATA / name)
        full = preprocess(decode_image(data))
        reduced_image = decode_image(data, preprocess.min_source_size)
        assert max(reduced_image.size) < 1000  # DCT scaling happened
        scores = backend.infer(np.stack([full, preprocess(reduced_image)]))
        assert scores[0].argmax() == scores[1].argmax()
