"""Record PaddleX 3.4.3's OCR answers once, for tests/test_ocr_correctness.py.

Run with the PaddleX environment from benchmarks/paddlex_setup.sh, on the
models pxserve embeds (their directories are built by ``pxserve --prepare
--pipeline OCR``; pass the cache folder)::

    PADDLE_PDX_ENABLE_MKLDNN_BYDEFAULT=False benchmarks/.paddlex-venv/bin/python \\
        benchmarks/paddlex_ocr_reference.py ~/.cache/pxserve/models tests/data/ocr/*.jpg

oneDNN must be off: PaddleX 3.4.3 on Paddle 3.3 fails on these models with
it on (see README). The text-line orientation stage is off in the
recording, because pxserve runs that stage differently on purpose; with it
off the two must read the same text.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import yaml


def pipeline_config(models: Path) -> dict:
    return {
        "pipeline_name": "OCR",
        "text_type": "general",
        "use_doc_preprocessor": False,
        "use_textline_orientation": False,
        "SubModules": {
            "TextDetection": {
                "module_name": "text_detection",
                "model_name": "PP-OCRv4_mobile_det",
                "model_dir": str(models / "PP-OCRv4_mobile_det-v1"),
                "limit_side_len": 64,
                "limit_type": "min",
                "max_side_limit": 4000,
                "thresh": 0.3,
                "box_thresh": 0.6,
                "unclip_ratio": 1.5,
            },
            "TextRecognition": {
                "module_name": "text_recognition",
                "model_name": "PP-OCRv4_mobile_rec",
                "model_dir": str(models / "PP-OCRv4_mobile_rec-v1"),
                "batch_size": 6,
                "score_thresh": 0.0,
            },
        },
    }


def without_paths(result: object) -> object:
    """A result's JSON without ``input_path`` and ``page_index``, at every depth (what PaddleX's
    serving calls the pruned result)."""
    if isinstance(result, dict):
        return {k: without_paths(v) for k, v in result.items() if k not in ("input_path", "page_index")}
    if isinstance(result, list):
        return [without_paths(v) for v in result]
    return result


def main() -> int:
    from paddlex import create_pipeline

    models, inputs = Path(sys.argv[1]).expanduser(), [Path(p) for p in sys.argv[2:]]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as stream:
        yaml.safe_dump(pipeline_config(models), stream)
    pipeline = create_pipeline(pipeline=stream.name, device="cpu")
    for path in inputs:
        pages = []
        for result in pipeline.predict(str(path)):
            res = result.json["res"]
            keys = ("rec_texts", "rec_scores", "dt_polys", "rec_polys", "rec_boxes")
            pages.append({k: res[k] for k in keys})
        target = path.with_name(path.name + ".paddlex.json")
        target.write_text(json.dumps({"paddlex": "3.4.3", "pages": pages}, ensure_ascii=False, indent=1))
        print(f"{path}: {sum(len(p['rec_texts']) for p in pages)} lines -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
