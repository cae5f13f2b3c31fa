"""Record PaddleX 3.4.3's PP-StructureV3 answers on pxserve's detections (for test_structure_paddlex.py).

PaddleX cannot load the layout model pxserve embeds (CDLA, ONNX only) nor
download its own offline, so its layout-parsing code is fed pxserve's
detections: the same layout boxes (with the PP-StructureV3 labels pxserve
gave CDLA's classes: PaddleX knows only PP-DocLayout's), the same OCR
lines, the same tables' HTML. What PaddleX then decides -- blocks, their
text, reading order, Markdown, isStart/isEnd -- is recorded; the test feeds
pxserve the same inputs and compares. Two steps:

1. ``python benchmarks/paddlex_structure_reference.py capture`` (pxserve's
   environment): serves PP-StructureV3 and its GeneralOCR settings as /ocr,
   reads each page photo of the typeset articles (tests/structure_docs.py,
   150 dpi JPEG) and writes the inputs to tests/data/structure/paddlex.json.
2. ``PADDLE_PDX_ENABLE_MKLDNN_BYDEFAULT=False benchmarks/.paddlex-venv/bin/python
   benchmarks/paddlex_structure_reference.py record ~/.cache/pxserve/models/PP-OCRv5_mobile_rec-v1``
   (PaddleX's environment, benchmarks/paddlex_setup.sh plus ``paddlex[ocr]``):
   runs PaddleX's ``get_layout_parsing_res`` and ``LayoutParsingResultV2``
   on those inputs, its text recognizer (used for lines that cross two
   regions) being pxserve's PP-OCRv5 mobile one, and adds PaddleX's answers.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "tests" / "data" / "structure" / "paddlex.json"
PAGES = {"article_one_column": 2, "article_two_columns": 2}
IGNORED = ["number", "footnote", "header", "header_image", "footer", "footer_image", "aside_text"]


def page_jpeg(name: str, index: int) -> bytes:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(ROOT / "tests" / "data" / "structure" / f"{name}.pdf"))
    buffer = io.BytesIO()
    document[index].render(scale=150 / 72).to_pil().convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# -- step 1: pxserve's detections ----------------------------------------------------------
def capture() -> None:
    import requests
    import yaml

    sys.path.insert(0, str(HERE))
    from run import start, stop

    from pxserve.workers.structure.blocks import from_layout, pp_label

    work = HERE / ".cache" / "structure_reference"
    work.mkdir(parents=True, exist_ok=True)
    structure = yaml.safe_load((ROOT / "configs" / "PP-StructureV3.yaml").read_text())
    ocr = {**structure["SubPipelines"]["GeneralOCR"], "Serving": structure["Serving"]}
    (work / "ocr.yaml").write_text(yaml.safe_dump(ocr))
    command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", "PP-StructureV3"]
    command += ["--pipeline", str(work / "ocr.yaml"), "--host", "127.0.0.1"]
    process, url = start(command, {}, work / "server.log")
    pages = []
    try:
        for name, count in PAGES.items():
            for index in range(count):
                file = base64.b64encode(page_jpeg(name, index)).decode()
                answer = requests.post(f"{url}/layout-parsing", json={"file": file}, timeout=600).json()
                pruned = answer["result"]["layoutParsingResults"][0]["prunedResult"]
                lines = requests.post(
                    f"{url}/ocr",
                    json={"file": file, "returnWordBox": True, "useTextlineOrientation": False},
                    timeout=600,
                ).json()["result"]["ocrResults"][0]["prunedResult"]
                height, width = answer["result"]["dataInfo"]["height"], answer["result"]["dataInfo"]["width"]
                labels = {
                    b.source: b.label for b in from_layout(pruned["layout_det_res"], lines, (height, width))
                }
                boxes = [
                    {**box, "label": labels.get(i, pp_label(box["label"]))}
                    for i, box in enumerate(pruned["layout_det_res"]["boxes"])
                ]
                pages.append(
                    {
                        "document": name,
                        "page": index,
                        "size": [height, width],
                        "layout_det_res": pruned["layout_det_res"],  # as detected: pxserve's input
                        "layout_boxes": boxes,  # with the labels pxserve gave them: PaddleX's input
                        "ocr": {k: lines[k] for k in ("dt_polys", "rec_texts", "rec_scores", "rec_polys",
                                                      "rec_boxes", "text_word", "text_word_region")},
                        "tables": [{"pred_html": t["pred_html"]} for t in pruned["table_res_list"]],
                        "pxserve_markdown": answer["result"]["layoutParsingResults"][0]["markdown"]["text"],
                    }
                )  # fmt: skip
                print(f"captured {name} page {index + 1}", file=sys.stderr)
    finally:
        stop(process)
    OUT.write_text(json.dumps({"pages": pages}, indent=1, ensure_ascii=False))


# -- step 2: PaddleX's decisions on them ----------------------------------------------------
def record(rec_model_dir: str) -> None:
    from types import SimpleNamespace

    import cv2
    import numpy as np
    from paddlex import create_model
    from paddlex.inference.common.result import BaseCVResult  # noqa: F401  (PaddleX's result types load)
    from paddlex.inference.pipelines.layout_parsing.pipeline_v2 import _LayoutParsingPipelineV2
    from paddlex.inference.pipelines.layout_parsing.result_v2 import LayoutParsingResultV2

    recognizer = create_model(model_name="PP-OCRv5_mobile_rec", model_dir=rec_model_dir, device="cpu")
    pipeline = object.__new__(_LayoutParsingPipelineV2)
    pipeline.general_ocr_pipeline = SimpleNamespace(text_rec_model=recognizer, text_rec_score_thresh=0.0)
    data = json.loads(OUT.read_text())
    for page in data["pages"]:
        image = cv2.imdecode(
            np.frombuffer(page_jpeg(page["document"], page["page"]), np.uint8), cv2.IMREAD_COLOR
        )
        ocr = _ocr_result(page["ocr"], image)
        layout = {"boxes": [dict(b) for b in page["layout_boxes"]]}
        tables = [dict(t) for t in page["tables"]]
        blocks = pipeline.get_layout_parsing_res(
            image, {"boxes": []}, layout, ocr, tables, [], [], [], 0.0, IGNORED
        )
        result = LayoutParsingResultV2(
            {
                "input_path": None, "page_index": None, "page_count": None,
                "width": image.shape[1], "height": image.shape[0],
                "doc_preprocessor_res": {"output_img": image}, "layout_det_res": layout,
                "region_det_res": {"boxes": []},
                "overall_ocr_res": ocr, "table_res_list": tables, "seal_res_list": [], "chart_res_list": [],
                "formula_res_list": [], "parsing_res_list": blocks, "imgs_in_doc": [],
                "model_settings": {
                    "use_doc_preprocessor": False, "use_seal_recognition": False,
                    "use_table_recognition": True, "use_formula_recognition": False,
                    "use_chart_recognition": False, "use_region_detection": False,
                    "markdown_ignore_labels": IGNORED,
                },
            }
        )  # fmt: skip
        markdown = result._to_markdown(pretty=True)
        page["paddlex"] = {
            "blocks": [
                {"label": b.label, "content": b.content, "bbox": [int(v) for v in b.bbox],
                 "order": b.order_index}
                for b in blocks
            ],
            "markdown": markdown["markdown_texts"],
            "isStart": bool(markdown["page_continuation_flags"][0]),
            "isEnd": bool(markdown["page_continuation_flags"][1]),
        }  # fmt: skip
        print(f"recorded {page['document']} page {page['page'] + 1}: {len(blocks)} blocks", file=sys.stderr)
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=False))


def _ocr_result(ocr: dict[str, Any], image: Any) -> Any:
    """pxserve's /ocr prunedResult as PaddleX's OCRResult (arrays where PaddleX expects them)."""
    import numpy as np
    from paddlex.inference.pipelines.ocr.result import OCRResult

    result = OCRResult(
        {
            "input_img": image,
            "dt_polys": [np.array(p, np.int16) for p in ocr["dt_polys"]],
            "rec_polys": [np.array(p, np.int16) for p in ocr["rec_polys"]],
            "rec_texts": list(ocr["rec_texts"]),
            "rec_scores": list(ocr["rec_scores"]),
            "rec_boxes": np.array(ocr["rec_boxes"], np.int16).reshape(-1, 4),
            "text_word": ocr.get("text_word") or [],
            "text_word_region": ocr.get("text_word_region") or [],
            "return_word_box": True,
        }
    )
    result["rec_labels"] = ["text"] * len(result["rec_texts"])
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["capture"]:
        capture()
    elif sys.argv[1:2] == ["record"] and len(sys.argv) == 3:
        record(sys.argv[2])
    else:
        raise SystemExit(__doc__)
