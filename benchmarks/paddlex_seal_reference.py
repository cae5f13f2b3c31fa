"""Record PaddleX 3.4.3's seal_recognition answers once, for tests/test_documents.py.

PaddleX runs ONNX only through its high-performance plugin (not on PyPI for
this platform), so the embedded ONNX seal detector is first converted to a
Paddle program with x2paddle; the conversion is checked against ONNX
Runtime (largest difference on a random input: about 1e-7). Steps, with the
PaddleX environment from benchmarks/paddlex_setup.sh::

    benchmarks/.paddlex-venv/bin/pip install x2paddle onnx==1.14.1
    PADDLE_PDX_ENABLE_MKLDNN_BYDEFAULT=False benchmarks/.paddlex-venv/bin/python \\
        benchmarks/paddlex_seal_reference.py ~/.cache/pxserve/models /tmp/seal-det tests/data/seals/*.png

(the first folder holds pxserve's built models: ``pxserve --prepare
--pipeline seal_recognition``; the second receives the converted detector).
Layout detection and document preprocessing are off, as in pxserve's
shipped config; the recognizer is pxserve's PP-OCRv4 mobile one.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paddlex_ocr_reference import pipeline_config as ocr_config
from paddlex_ocr_reference import without_paths

ONNX = Path(__file__).resolve().parent.parent / "workers" / "doc_weights" / "seal_det" / "inference.onnx"


def convert(models: Path, target: Path) -> Path:
    """The seal detector as a Paddle model directory (inference.json, .pdiparams, .yml)."""
    if (target / "inference.json").is_file():
        return target
    from x2paddle.convert import onnx2paddle

    work = Path(tempfile.mkdtemp())
    onnx2paddle(str(ONNX), str(work), disable_feedback=True, enable_onnx_checker=False)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "inference_model" / "model.json", target / "inference.json")
    shutil.copyfile(work / "inference_model" / "model.pdiparams", target / "inference.pdiparams")
    shutil.copyfile(models / "PP-OCRv4_mobile_seal_det-v1" / "inference.yml", target / "inference.yml")
    return target


def pipeline_config(models: Path, detector: Path) -> dict:
    return {
        "pipeline_name": "seal_recognition",
        "use_doc_preprocessor": False,
        "use_layout_detection": False,
        "SubPipelines": {"SealOCR": seal_ocr(models, detector)},
    }


def seal_ocr(models: Path, detector: Path) -> dict:
    """OCR's recorded config, made PaddleX's SealOCR: seal text, the seal detector and settings."""
    config = ocr_config(models)
    config["text_type"] = "seal"
    config["SubModules"]["TextDetection"] = {
        "module_name": "seal_text_detection",
        "model_name": "PP-OCRv4_mobile_seal_det",
        "model_dir": str(detector),
        "limit_side_len": 736,
        "limit_type": "min",
        "max_side_limit": 4000,
        "thresh": 0.2,
        "box_thresh": 0.6,
        "unclip_ratio": 0.5,
    }
    config["SubModules"]["TextRecognition"]["batch_size"] = 1
    return config


def main() -> int:
    from paddlex import create_pipeline

    models, detector = Path(sys.argv[1]).expanduser(), Path(sys.argv[2])
    inputs = [Path(p) for p in sys.argv[3:]]
    convert(models, detector)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as stream:
        yaml.safe_dump(pipeline_config(models, detector), stream)
    pipeline = create_pipeline(pipeline=stream.name, device="cpu")
    for path in inputs:
        pages = []
        for result in pipeline.predict(str(path)):
            res = without_paths(result.json["res"])
            pages.append(res)
        target = path.with_name(path.name + ".paddlex.json")
        target.write_text(json.dumps({"paddlex": "3.4.3", "pages": pages}, ensure_ascii=False, indent=1))
        print(f"{path}: {[s['rec_texts'] for s in pages[0]['seal_res_list']]} -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
