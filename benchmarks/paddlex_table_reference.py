"""Record PaddleX 3.4.3's table_recognition answers once, for tests/test_tables.py.

Run with the PaddleX environment from benchmarks/paddlex_setup.sh, on the
models pxserve embeds (built by ``pxserve --prepare --pipeline
table_recognition``; pass the cache folder)::

    PADDLE_PDX_ENABLE_MKLDNN_BYDEFAULT=False benchmarks/.paddlex-venv/bin/python \\
        benchmarks/paddlex_table_reference.py ~/.cache/pxserve/models tests/data/tables/*.png

Layout detection and document preprocessing are off: PaddleX 3.4.3 cannot
load the embedded layout and orientation models (ONNX only, and PaddleX
runs ONNX only through its high-performance plugin, which is not on PyPI
for this platform). Each image is recorded twice: cells matched to the
page's OCR lines, and with ``use_ocr_results_with_table_cells``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import yaml


def pipeline_config(models: Path) -> dict:
    return {
        "pipeline_name": "table_recognition",
        "use_doc_preprocessor": False,
        "use_layout_detection": False,
        "use_ocr_model": True,
        "SubModules": {
            "TableStructureRecognition": {
                "module_name": "table_structure_recognition",
                "model_name": "SLANet_plus",
                "model_dir": str(models / "SLANet_plus-v1"),
            },
        },
        "SubPipelines": {
            "GeneralOCR": {
                "pipeline_name": "OCR",
                "text_type": "general",
                "use_doc_preprocessor": False,
                "use_textline_orientation": False,
                "SubModules": {
                    "TextDetection": {
                        "module_name": "text_detection",
                        "model_name": "PP-OCRv4_mobile_det",
                        "model_dir": str(models / "PP-OCRv4_mobile_det-v1"),
                        "limit_side_len": 960,
                        "limit_type": "max",
                        "max_side_limit": 4000,
                        "thresh": 0.3,
                        "box_thresh": 0.6,
                        "unclip_ratio": 1.5,
                    },
                    "TextRecognition": {
                        "module_name": "text_recognition",
                        "model_name": "PP-OCRv4_mobile_rec",
                        "model_dir": str(models / "PP-OCRv4_mobile_rec-v1"),
                        "batch_size": 1,
                        "score_thresh": 0,
                    },
                },
            },
        },
    }


def pruned(result) -> dict:
    res = dict(result.json["res"])
    res.pop("input_path", None)
    res.pop("page_index", None)
    res["overall_ocr_res"] = {
        k: v for k, v in res["overall_ocr_res"].items() if k not in ("input_path", "page_index")
    }
    return res


def main() -> int:
    from paddlex import create_pipeline

    models, inputs = Path(sys.argv[1]).expanduser(), [Path(p) for p in sys.argv[2:]]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as stream:
        yaml.safe_dump(pipeline_config(models), stream)
    pipeline = create_pipeline(pipeline=stream.name, device="cpu")
    for path in inputs:
        matched = [pruned(r) for r in pipeline.predict(str(path))]
        by_cells = [pruned(r) for r in pipeline.predict(str(path), use_ocr_results_with_table_cells=True)]
        target = path.with_name(path.name + ".paddlex.json")
        record = {"paddlex": "3.4.3", "pages": matched, "pages_with_cell_ocr": by_cells}
        target.write_text(json.dumps(record, ensure_ascii=False, indent=1))
        print(f"{path}: {[t['pred_html'][:80] for t in matched[0]['table_res_list']]} -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
