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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paddlex_ocr_reference import pipeline_config as ocr_config
from paddlex_ocr_reference import without_paths


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
        "SubPipelines": {"GeneralOCR": general_ocr(models)},
    }


def general_ocr(models: Path) -> dict:
    """OCR's recorded config with PaddleX's table_recognition settings for its GeneralOCR."""
    config = ocr_config(models)
    config["SubModules"]["TextDetection"].update(limit_side_len=960, limit_type="max")
    config["SubModules"]["TextRecognition"]["batch_size"] = 1
    return config


def pruned(result) -> dict:
    return without_paths(result.json["res"])


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
