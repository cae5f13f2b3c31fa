"""Preprocessing from inference.yml, checked against hand-computed values."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pxserve.shared.model_dir import ModelDir, ModelDirError
from pxserve.workers.preprocess import (
    CropImage,
    ImageDecodeError,
    PreprocessError,
    Preprocessor,
    ResizeImage,
    decode_image,
)

PADDLEX_OPS = [
    {"ResizeImage": {"resize_short": 256}},
    {"CropImage": {"size": 224}},
    {
        "NormalizeImage": {
            "scale": 0.00392156862745098,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "order": "",
            "channel_num": 3,
        }
    },
    {"ToCHWImage": None},
]


def test_resize_short_keeps_aspect_like_paddlex() -> None:
    op = ResizeImage(resize_short=256)
    assert op.target(640, 480) == (341, 256)
    assert op.target(300, 451) == (256, 385)
    assert ResizeImage(size=[224, 112]).target(640, 480) == (224, 112)
    with pytest.raises(PreprocessError):
        ResizeImage()


def test_centre_crop_takes_the_middle() -> None:
    image = Image.fromarray(np.arange(10 * 6, dtype=np.uint8).reshape(6, 10))
    cropped = np.asarray(CropImage(size=[4, 2])(image))
    assert cropped.tolist() == np.arange(60).reshape(6, 10)[2:4, 3:7].tolist()


def test_full_chain_matches_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(256, 300, 3), dtype=np.uint8)  # already short side 256
    out = Preprocessor(PADDLEX_OPS)(Image.fromarray(pixels))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    crop = pixels[16:240, 38:262].astype(np.float64) / 255.0
    expected = ((crop - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_paddleclas_string_scale_and_missing_to_chw() -> None:
    ops = [{"NormalizeImage": {"scale": "1./255.", "mean": [0, 0, 0], "std": [1, 1, 1]}}]
    out = Preprocessor(ops)(Image.new("RGB", (4, 2), (255, 0, 51)))
    assert out.shape == (3, 2, 4)
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)


def test_unsupported_ops_are_named() -> None:
    with pytest.raises(PreprocessError, match=r"unsupported preprocessing op 'Foo'"):
        Preprocessor([{"Foo": {}}])


def test_large_jpegs_decode_reduced_but_never_below_what_the_resize_needs() -> None:
    preprocess = Preprocessor(PADDLEX_OPS)
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (90, 120, 150)).save(buffer, format="JPEG")
    reduced = decode_image(buffer.getvalue(), preprocess.min_source_size)
    assert reduced.size == (500, 375)  # 1/8 scale: still >= 341 x 256
    assert decode_image(buffer.getvalue()).size == (4000, 3000)
    assert preprocess(reduced).shape == (3, 224, 224)
    # Already small, or a resize that comes after a crop: decoded at full size.
    assert preprocess.min_source_size(300, 250) is None
    assert Preprocessor([{"CropImage": {"size": 8}}]).min_source_size(4000, 3000) is None
    assert ResizeImage(size=[224, 224]).min_source_size(4000, 3000) == (224, 224)


def test_decode_converts_every_mode_to_rgb() -> None:
    for mode, fmt in [("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG")]:
        buffer = io.BytesIO()
        Image.new(mode, (8, 8)).save(buffer, format=fmt)
        assert decode_image(buffer.getvalue()).mode == "RGB", mode
    with pytest.raises(ImageDecodeError):
        decode_image(b"GIF89a-but-not-really")


def test_model_dir_checks_are_specific(tmp_path) -> None:
    with pytest.raises(ModelDirError, match=r"does not exist"):
        ModelDir.load(tmp_path / "missing")
    with pytest.raises(ModelDirError, match=r"neither inference.json, inference.pdmodel nor inference.onnx"):
        ModelDir.load(tmp_path)
    (tmp_path / "inference.pdmodel").write_bytes(b"")
    with pytest.raises(ModelDirError, match=r"no inference.pdiparams"):
        ModelDir.load(tmp_path)
    (tmp_path / "inference.pdiparams").write_bytes(b"")
    with pytest.raises(ModelDirError, match=r"no inference.yml"):
        ModelDir.load(tmp_path)
    (tmp_path / "inference.yml").write_text("PreProcess: {transform_ops: []}\n")
    assert ModelDir.load(tmp_path).model_name == tmp_path.name
