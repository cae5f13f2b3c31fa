"""A tiny real Paddle classifier the tests export in about a second.

It answers a question a test can check: which colour channel dominates the
image (red, green or blue). A seeded random 1x1 convolution feeds a fixed
readout, so the network is genuine Paddle Inference work (conv, pool,
linear, softmax) with a known answer, not a mock.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

LABELS = ["red", "green", "blue"]
INPUT_SIZE = 32


def inference_spec(model_name: str = "TinyColorNet") -> dict:
    return {
        "Global": {"model_name": model_name},
        "PreProcess": {
            "transform_ops": [
                {"ResizeImage": {"resize_short": 36}},
                {"CropImage": {"size": INPUT_SIZE}},
                {"NormalizeImage": {"scale": "1./255.", "mean": [0, 0, 0], "std": [1, 1, 1], "order": ""}},
                {"ToCHWImage": None},
            ]
        },
        "PostProcess": {"Topk": {"topk": 3, "label_list": LABELS}},
    }


def build_legacy(target: Path) -> Path:
    """The same model in the older program format (inference.pdmodel).

    Paddle picks the format when it is imported, so this runs in a child.
    """
    import os
    import subprocess
    import sys

    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import tiny_model; "
    code += f"tiny_model.build(__import__('pathlib').Path({str(target)!r}))"
    env = {**os.environ, "FLAGS_enable_pir_api": "0"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, timeout=300)
    assert (target / "inference.pdmodel").is_file()
    return target


def build(target: Path, seed: int = 7) -> Path:
    """Export the model to ``target`` as a PaddleX model directory."""
    import paddle
    from paddle import nn

    paddle.seed(seed)
    rng = np.random.default_rng(seed)

    class TinyColorNet(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.mix = nn.Conv2D(3, 8, 1)
            self.pool = nn.AdaptiveAvgPool2D(1)
            self.readout = nn.Linear(8, 3)

        def forward(self, x: paddle.Tensor) -> paddle.Tensor:
            x = self.pool(self.mix(x)).flatten(1)
            return nn.functional.softmax(self.readout(x) * 20.0, axis=-1)

    net = TinyColorNet()
    # A mixing matrix with a known left inverse, so the readout recovers the
    # mean colour exactly: readout(mix(x)) = mean RGB of x.
    mix = rng.normal(size=(8, 3)).astype(np.float32)
    net.mix.weight.set_value(mix.reshape(8, 3, 1, 1))
    net.mix.bias.set_value(np.zeros(8, np.float32))
    net.readout.weight.set_value(np.linalg.pinv(mix).T.astype(np.float32))
    net.readout.bias.set_value(np.zeros(3, np.float32))
    net.eval()

    target.mkdir(parents=True, exist_ok=True)
    spec = paddle.static.InputSpec([None, 3, INPUT_SIZE, INPUT_SIZE], "float32", "x")
    paddle.jit.save(net, str(target / "inference"), input_spec=[spec])
    (target / "inference.yml").write_text(yaml.safe_dump(inference_spec(), sort_keys=False))
    return target


def build_mismatched(target: Path) -> Path:
    """A model that loads but cannot run: it flattens a 32x32 input into a
    Linear layer, while its inference.yml crops to 24x24."""
    import paddle
    from paddle import nn

    paddle.seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * INPUT_SIZE * INPUT_SIZE, len(LABELS)), nn.Softmax())
    net.eval()
    target.mkdir(parents=True, exist_ok=True)
    spec = paddle.static.InputSpec([None, 3, INPUT_SIZE, INPUT_SIZE], "float32", "x")
    paddle.jit.save(net, str(target / "inference"), input_spec=[spec])
    inference = inference_spec("FlatNet")
    inference["PreProcess"]["transform_ops"][1] = {"CropImage": {"size": INPUT_SIZE - 8}}
    (target / "inference.yml").write_text(yaml.safe_dump(inference, sort_keys=False))
    return target


def build_detector(target: Path) -> Path:
    """A model shaped like PaddleX's detection exports: inputs ``image``,
    ``im_shape`` and ``scale_factor``; outputs boxes (one row per box:
    class, score, x1, y1, x2, y2) and the box count per image.

    Each image gets one box, class 0, scored by its mean pixel value, that
    covers the original image (im_shape / scale_factor), so every output
    depends on every input.
    """
    import paddle
    from paddle import nn

    class TinyDetector(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            # A weight of 1 (an export needs at least one parameter to write inference.pdiparams).
            self.gain = self.create_parameter([1], default_initializer=nn.initializer.Constant(1.0))

        def forward(self, image, im_shape, scale_factor):  # type: ignore[no-untyped-def]
            score = image.mean(axis=[1, 2, 3]).unsqueeze(1) * self.gain
            size = im_shape / scale_factor  # (h, w) of the original image
            zeros = paddle.zeros_like(score)
            boxes = paddle.concat([zeros, score, zeros, zeros, size[:, 1:2], size[:, 0:1]], axis=1)
            count = paddle.ones_like(score[:, 0]).astype("int32")
            return boxes, count

    net = TinyDetector()
    net.eval()
    target.mkdir(parents=True, exist_ok=True)
    specs = [
        paddle.static.InputSpec([None, 3, None, None], "float32", "image"),
        paddle.static.InputSpec([None, 2], "float32", "im_shape"),
        paddle.static.InputSpec([None, 2], "float32", "scale_factor"),
    ]
    paddle.jit.save(net, str(target / "inference"), input_spec=specs)
    spec = {"Global": {"model_name": "TinyDetector"}, "PreProcess": {"transform_ops": []}, "PostProcess": {}}
    (target / "inference.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return target
