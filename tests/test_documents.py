"""PaddleX's document pipelines against one real server: doc_preprocessor, table_recognition,
seal_recognition, and OCR with its pages turned upright -- all with the real embedded models.

Correctness:
* tables: the same prunedResult as PaddleX 3.4.3 on the same models and
  settings (recorded once by benchmarks/paddlex_table_reference.py, layout
  and preprocessing off: PaddleX cannot load those models as shipped), in
  both of its cell modes; and the cells' text against the tables' known
  content;
* page orientation: PaddleX cannot run the ONNX-only classifier either, so
  the stage is proved on what it is for: pages turned by 90, 180 and 270
  degrees come back upright, and /ocr then reads them as PaddleX reads the
  upright page;
* seals (drawn with known text, tests/seals.py: a company name around the
  ring, a line under the star): the same polygons and texts as PaddleX 3.4.3
  on the same weights (benchmarks/paddlex_seal_reference.py converts the
  ONNX-only detector for PaddleX), and the seal's own text.
"""

from __future__ import annotations

import base64
import difflib
import io
import json
import re
import shutil
import time
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pdfs
import pytest
import requests
import seals
import tables
import tiny_model
import yaml
from conftest import Server, start_server, stop_and_check_clean
from PIL import Image
from test_ocr import DATA, b64, b64_file, reference

TABLES = Path(__file__).parent / "data" / "tables"
SEAL_DATA = Path(__file__).parent / "data" / "seals"
SERVING = {"instances_per_device": 2, "cpu_threads": 1, "max_pdf_pages": 3}


def shipped_config(folder: Path, name: str, serving: dict[str, Any] | None = None) -> Path:
    config = yaml.safe_load((resources.files("pxserve.configs") / f"{name}.yaml").read_text())
    config["Serving"].update(serving or {})
    path = folder / f"{name}-{len(list(folder.glob(f'{name}-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def seal_config_with_layout(folder: Path) -> Path:
    """The shipped seal config plus a layout model made like PaddleX's PP-DocLayout exports
    (tests/tiny_model.py: one box over the whole image, labelled "seal"), off by default."""
    layout = tiny_model.build_detector(folder / "tiny-seal-layout")
    spec = yaml.safe_load((layout / "inference.yml").read_text())
    spec.update(label_list=["seal"], draw_threshold=0.5)
    (layout / "inference.yml").write_text(yaml.safe_dump(spec))
    path = shipped_config(folder, "seal_recognition", SERVING)
    config = yaml.safe_load(path.read_text())
    config["SubModules"] = {
        "LayoutDetection": {
            "module_name": "layout_detection",
            "model_name": "TinyDetector",
            "model_dir": str(layout),
            "threshold": 0.5,
        }
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def docs(work_dir: Path) -> Server:
    names = ("table_recognition", "doc_preprocessor", "OCR_PP-OCRv4")
    configs = [shipped_config(work_dir, name, SERVING) for name in names] + [
        seal_config_with_layout(work_dir)
    ]
    args = [a for c in configs[1:] for a in ("--pipeline", str(c))]
    running = start_server(configs[0], work_dir, *args)
    yield running
    stop_and_check_clean(running)


def post(server: Server, route: str, payload: dict[str, Any], timeout: float = 180) -> requests.Response:
    return requests.post(f"{server.url}{route}", json=payload, timeout=timeout)


def result(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["errorCode"] == 0
    return body["result"]


def turned(path: Path, angle: int) -> Image.Image:
    """The page turned clockwise by ``angle`` degrees, as a scanner might have fed it."""
    return Image.open(path).convert("RGB").rotate(-angle, expand=True)


def jpeg(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(b64_image: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64_image))).convert("RGB"))


def nearly_same(a: np.ndarray, b: np.ndarray) -> bool:
    """The same page, JPEG noise aside and give or take a pixel (PaddleX turns pages by an
    affine warp about the centre, which moves them by up to a pixel and leaves a dark edge)."""
    inner = b[3:-3, 3:-3]
    return (
        min(
            np.abs(a[3 + dy : a.shape[0] - 3 + dy, 3 + dx : a.shape[1] - 3 + dx] - inner).mean()
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        < 6
    )


def similarity(texts: list[str], expected: list[str]) -> float:
    """How alike two readings of a page are (1: the same characters), spaces and the
    recognizer's two kinds of comma aside."""

    def flat(lines: list[str]) -> str:
        return re.sub(r"\s+", "", "".join(lines)).replace("\uff0c", ",")

    return difflib.SequenceMatcher(None, flat(texts), flat(expected), autojunk=False).ratio()


# -- doc_preprocessor ---------------------------------------------------------------------
@pytest.mark.slow
def test_pages_turned_any_way_come_back_upright(docs: Server) -> None:
    # The classifier exists only as ONNX: it runs on ONNX Runtime beside the Paddle models, said once.
    assert "PP-LCNet_x1_0_doc_ori exists only as inference.onnx; it runs on ONNX Runtime" in docs.logs()
    upright = np.asarray(Image.open(DATA / "page_top.jpg").convert("RGB")).astype(int)
    for angle in (0, 90, 180, 270):
        body = result(
            post(docs, "/document-preprocessing", {"file": jpeg(turned(DATA / "page_top.jpg", angle))})
        )
        assert body["dataInfo"]["type"] == "image"
        (entry,) = body["docPreprocessingResults"]
        assert entry["prunedResult"] == {
            "model_settings": {"use_doc_orientation_classify": True, "use_doc_unwarping": False},
            "angle": angle,
        }
        output = decoded(entry["outputImage"]).astype(int)
        assert output.shape == upright.shape
        assert nearly_same(output, upright), angle
        assert entry["docPreprocessingImage"] is None and entry["inputImage"] is None


@pytest.mark.slow
def test_doc_preprocessor_switches_pdfs_and_visualize(docs: Server) -> None:
    off = result(
        post(
            docs,
            "/document-preprocessing",
            {"file": jpeg(turned(DATA / "page_top.jpg", 90)), "useDocOrientationClassify": False},
        )
    )
    assert off["docPreprocessingResults"][0]["prunedResult"]["angle"] == -1
    pdf = pdfs.from_images([turned(DATA / "page_top.jpg", 180), Image.open(DATA / "page_top.jpg")])
    body = result(post(docs, "/document-preprocessing", {"file": b64(pdf), "fileType": 0, "visualize": True}))
    assert body["dataInfo"]["numPages"] == 2 and body["dataInfo"]["type"] == "pdf"
    angles = [e["prunedResult"]["angle"] for e in body["docPreprocessingResults"]]
    assert angles == [180, 0]
    for entry in body["docPreprocessingResults"]:
        three, one = decoded(entry["docPreprocessingImage"]).shape, decoded(entry["inputImage"]).shape
        assert three[1] / three[0] > 2.5 * one[1] / one[0]  # input, turned, unwarped side by side
    refused = post(
        docs, "/document-preprocessing", {"file": b64_file(DATA / "page_top.jpg"), "useDocUnwarping": True}
    )
    assert refused.status_code == 422 and "unwarping" in refused.json()["errorMsg"]


@pytest.mark.slow
def test_ocr_reads_a_turned_page_as_paddlex_reads_it_upright(docs: Server) -> None:
    # Its last line is cut in half by the image's edge, which the turn (an affine warp,
    # as PaddleX's) darkens: read either way, it is not text to compare.
    expected = reference("page_top.jpg")["rec_texts"][:-2]
    for angle in (90, 180):
        page = turned(DATA / "page_top.jpg", angle)
        payload = {"file": jpeg(page), "useTextlineOrientation": False, "useDocOrientationClassify": True}
        pruned = result(post(docs, "/ocr", payload))["ocrResults"][0]["prunedResult"]
        assert pruned["model_settings"]["use_doc_preprocessor"] is True
        assert pruned["doc_preprocessor_res"]["angle"] == angle
        assert similarity(pruned["rec_texts"][: len(expected)], expected) > 0.95
        unturned = result(post(docs, "/ocr", {**payload, "useDocOrientationClassify": False}))
        assert similarity(unturned["ocrResults"][0]["prunedResult"]["rec_texts"], expected) < 0.6
    plain = result(post(docs, "/ocr", {"file": b64_file(DATA / "page_top.jpg")}))["ocrResults"][0][
        "prunedResult"
    ]
    assert "doc_preprocessor_res" not in plain and plain["model_settings"]["use_doc_preprocessor"] is False


# -- table_recognition -------------------------------------------------------------------------
def table_pages(response: requests.Response) -> list[dict[str, Any]]:
    return result(response)["tableRecResults"]


@pytest.mark.slow
def test_tables_match_paddlex_in_both_cell_modes(docs: Server) -> None:
    for name in ("releases.png", "units.png"):
        recorded = json.loads((TABLES / f"{name}.paddlex.json").read_text())
        for key, extra in (("pages", {}), ("pages_with_cell_ocr", {"useOcrResultsWithTableCells": True})):
            payload = {"file": b64_file(TABLES / name), "useLayoutDetection": False, **extra}
            ours = table_pages(post(docs, "/table-recognition", payload))[0]["prunedResult"]
            theirs = recorded[key][0]
            assert set(ours) == set(theirs) == {"model_settings", "overall_ocr_res", "table_res_list"}
            assert ours["model_settings"] == theirs["model_settings"]
            assert ours["overall_ocr_res"]["rec_texts"] == theirs["overall_ocr_res"]["rec_texts"]
            assert set(ours["overall_ocr_res"]) == set(theirs["overall_ocr_res"])
            (table,), (expected,) = ours["table_res_list"], theirs["table_res_list"]
            assert set(table) == set(expected)
            assert table["pred_html"] == expected["pred_html"], name
            assert table["cell_box_list"] == expected["cell_box_list"]
            assert table["table_ocr_pred"]["rec_texts"] == expected["table_ocr_pred"]["rec_texts"]


def cell_texts(html: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    return [[re.sub(r"\s+", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)] for row in rows]


@pytest.mark.slow
def test_table_cells_hold_the_tables_known_text(docs: Server) -> None:
    """Cell-level text match against the content the tables were drawn from."""
    for name, rows in (("releases.png", tables.RELEASES), ("units.png", tables.UNITS)):
        payload = {"file": b64_file(TABLES / name), "useLayoutDetection": False}
        html = table_pages(post(docs, "/table-recognition", payload))[0]["prunedResult"]["table_res_list"][0][
            "pred_html"
        ]
        truth = [[re.sub(r"\s+", "", c) for c in row] for row in rows]
        found = cell_texts(html)
        assert [len(r) for r in found] == [len(r) for r in truth]
        right = sum(a == b for fr, tr in zip(found, truth, strict=True) for a, b in zip(fr, tr, strict=True))
        assert right / sum(len(r) for r in truth) >= 0.95, found


@pytest.mark.slow
def test_layout_finds_the_table_on_a_page_and_pdfs_read_page_by_page(docs: Server) -> None:
    page = tables.table_page(tables.UNITS)
    body = result(post(docs, "/table-recognition", {"file": b64(tables.png(page)), "visualize": True}))
    (entry,) = body["tableRecResults"]
    pruned = entry["prunedResult"]
    assert pruned["model_settings"]["use_layout_detection"] is True
    labels = [b["label"] for b in pruned["layout_det_res"]["boxes"]]
    assert "table" in labels and "title" in labels
    (table,) = pruned["table_res_list"]
    assert cell_texts(table["pred_html"])[1] == ["length", "metre", "m"]
    x0, y0 = min(c[0] for c in table["cell_box_list"]), min(c[1] for c in table["cell_box_list"])
    assert x0 >= 100 and y0 >= 380  # in the page's pixels, where the table was drawn
    assert {"layout_det_res", "table_cell_img", "ocr_res_img"} <= set(entry["outputImages"])
    assert entry["inputImage"]
    pdf = pdfs.from_images([Image.open(TABLES / "units.png"), Image.new("RGB", (300, 200), "white")])
    body = result(post(docs, "/table-recognition", {"file": b64(pdf), "useLayoutDetection": False}))
    assert body["dataInfo"]["numPages"] == 2
    first, blank = (p["prunedResult"] for p in body["tableRecResults"])
    assert cell_texts(first["table_res_list"][0]["pred_html"])[0] == ["Quantity", "Unit", "Symbol"]
    assert blank["overall_ocr_res"]["rec_texts"] == []


@pytest.mark.slow
def test_a_turned_table_is_read_upright(docs: Server) -> None:
    image = turned(TABLES / "units.png", 180)
    payload = {"file": jpeg(image), "useLayoutDetection": False, "useDocOrientationClassify": True}
    pruned = table_pages(post(docs, "/table-recognition", payload))[0]["prunedResult"]
    assert pruned["doc_preprocessor_res"]["angle"] == 180
    assert cell_texts(pruned["table_res_list"][0]["pred_html"])[2] == ["mass", "kilogram", "kg"]


@pytest.mark.slow
def test_tables_without_tables_and_huge_tables_answer_cleanly(docs: Server) -> None:
    blank = tables.png(Image.new("RGB", (640, 480), "white"))
    pruned = table_pages(post(docs, "/table-recognition", {"file": b64(blank)}))[0]["prunedResult"]
    assert pruned["table_res_list"] == []  # layout found no table
    pruned = table_pages(post(docs, "/table-recognition", {"file": b64(blank), "useLayoutDetection": False}))[
        0
    ]
    assert pruned["prunedResult"]["overall_ocr_res"]["rec_texts"] == []
    grid = Image.new("L", (300 * 16 + 1, 300 * 16 + 1), 255)  # 300 x 300 cells
    pixels = np.asarray(grid).copy()
    pixels[::16, :] = 0
    pixels[:, ::16] = 0
    started = time.monotonic()
    response = post(
        docs,
        "/table-recognition",
        {"file": b64(tables.png(Image.fromarray(pixels))), "useLayoutDetection": False},
    )
    assert time.monotonic() - started < 120
    assert response.status_code == 200
    for payload, field in (
        ({"useOcrModel": False}, "useOcrModel"),
        ({"useDocUnwarping": True}, "useDocUnwarping"),
        ({"useOcrResultsWithTableCells": "yes"}, "useOcrResultsWithTableCells"),
    ):
        refused = post(docs, "/table-recognition", {"file": b64(blank), **payload})
        assert refused.status_code == 422 and field in refused.json()["errorMsg"], refused.text
    for bad in ("not base64!", b64(b"\x00" * 64), b64(pdfs.blank())):
        refused = post(docs, "/table-recognition", {"file": bad, "fileType": 1})
        assert refused.status_code == 422, refused.text
    assert docs.process.poll() is None and len(docs.workers()) == 2


@pytest.mark.slow
def test_table_structure_is_the_same_on_onnx_runtime(work_dir: Path) -> None:
    config = shipped_config(work_dir, "table_recognition", {"instances_per_device": 1})
    hpip = start_server(config, work_dir, "--use_hpip")
    try:
        recorded = json.loads((TABLES / "units.png.paddlex.json").read_text())["pages"][0]
        payload = {"file": b64_file(TABLES / "units.png"), "useLayoutDetection": False}
        ours = table_pages(post(hpip, "/table-recognition", payload))[0]["prunedResult"]
        assert ours["table_res_list"][0]["pred_html"] == recorded["table_res_list"][0]["pred_html"]
        assert "SLANet_plus's own inference.onnx" in hpip.logs()
    finally:
        stop_and_check_clean(hpip)


# -- seal_recognition ----------------------------------------------------------------------------
SEALS = [("上海市浦江科技有限公司", "合同专用章"), ("北京文档服务股份有限公司", "财务专用章")]


def seal_pages(response: requests.Response) -> list[dict[str, Any]]:
    return result(response)["sealRecResults"]


@pytest.mark.slow
def test_seals_read_as_paddlex_reads_them(docs: Server) -> None:
    """PaddleX 3.4.3 on the same detector weights (converted to Paddle: PaddleX cannot run
    the ONNX file) and recognizer: the same polygons and texts, and the text is the seal's."""
    for name, (ring, centre, _) in seals.CASES.items():
        recorded = json.loads((SEAL_DATA / f"{name}.paddlex.json").read_text())["pages"][0]
        (page,) = seal_pages(post(docs, "/seal-recognition", {"file": b64_file(SEAL_DATA / name)}))
        pruned = page["prunedResult"]
        assert set(pruned) == set(recorded)
        assert pruned["model_settings"] == recorded["model_settings"]
        (seal,), (expected,) = pruned["seal_res_list"], recorded["seal_res_list"]
        assert set(seal) == set(expected)
        assert seal["text_type"] == expected["text_type"] == "seal"
        assert seal["text_det_params"] == expected["text_det_params"]
        assert [len(p) for p in seal["dt_polys"]] == [len(p) for p in expected["dt_polys"]]
        for ours, theirs in zip(seal["dt_polys"], expected["dt_polys"], strict=True):
            assert np.abs(np.array(ours) - np.array(theirs)).max() <= 2
        assert len(seal["dt_polys"][0]) > 4  # the ring's text is a polygon, not a box
        assert seal["rec_texts"] == expected["rec_texts"] == [ring, centre]
        assert np.allclose(seal["rec_scores"], expected["rec_scores"], atol=0.02)  # straightened differently
        for box, poly in zip(seal["rec_boxes"], seal["rec_polys"], strict=True):
            xs, ys = [p[0] for p in poly], [p[1] for p in poly]
            assert box == [min(xs), min(ys), max(xs), max(ys)]
    (page,) = seal_pages(post(docs, "/seal-recognition", {"file": b64_file(SEAL_DATA / "seal_no_text.png")}))
    recorded = json.loads((SEAL_DATA / "seal_no_text.png.paddlex.json").read_text())["pages"][0]
    assert page["prunedResult"]["seal_res_list"] == recorded["seal_res_list"]  # empty, PaddleX's keys


@pytest.mark.slow
def test_curved_text_is_read_straight_at_any_arc(docs: Server) -> None:
    for ring, centre in SEALS:
        for arc in (180, 220, 250):
            image = seals.seal(ring, centre, cjk=True, arc=arc)
            (page,) = seal_pages(post(docs, "/seal-recognition", {"file": b64(seals.png(image))}))
            assert page["prunedResult"]["seal_res_list"][0]["rec_texts"] == [ring, centre], arc


@pytest.mark.slow
def test_seal_settings_layout_pdfs_and_bad_input(docs: Server) -> None:
    image = seals.seal(*SEALS[0], cjk=True)
    strict = {"file": b64(seals.png(image)), "sealRecScoreThresh": 0.99999, "visualize": True}
    (page,) = seal_pages(post(docs, "/seal-recognition", strict))
    assert page["prunedResult"]["seal_res_list"][0]["text_rec_score_thresh"] == 0.99999
    assert len(page["prunedResult"]["seal_res_list"][0]["rec_texts"]) < 2
    assert "seal_res_region1" in page["outputImages"] and page["inputImage"]
    found = post(docs, "/seal-recognition", {"file": b64(seals.png(image)), "useLayoutDetection": True})
    pruned = seal_pages(found)[0]["prunedResult"]
    assert pruned["model_settings"]["use_layout_detection"] is True
    assert [b["label"] for b in pruned["layout_det_res"]["boxes"]] == ["seal"]
    assert pruned["seal_res_list"][0]["rec_texts"] == list(SEALS[0])
    empty = seals.seal("", "", cjk=True)
    pdf = pdfs.from_images([image, empty], dpi=144)  # rendered at 2x: the pixels as drawn
    body = result(post(docs, "/seal-recognition", {"file": b64(pdf), "fileType": 0}))
    assert body["dataInfo"]["numPages"] == 2
    first, second = (p["prunedResult"]["seal_res_list"][0]["rec_texts"] for p in body["sealRecResults"])
    assert first == list(SEALS[0]) and second == []  # a seal with no text: empty, not an error
    for payload, field in (
        ({"layoutMergeBboxesMode": "biggest"}, "layoutMergeBboxesMode"),
        ({"sealDetLimitType": "mean"}, "sealDetLimitType"),
        ({"useDocUnwarping": True}, "useDocUnwarping"),
    ):
        refused = post(docs, "/seal-recognition", {"file": b64(seals.png(image)), **payload})
        assert refused.status_code == 422 and field in refused.json()["errorMsg"], refused.text
    for bad in ("not base64!", b64(b"\x00" * 64), b64(pdfs.encrypted())):
        refused = post(docs, "/seal-recognition", {"file": bad})
        assert refused.status_code == 422, refused.text
    assert docs.process.poll() is None and len(docs.workers()) == 2


# -- PP-OCRv6 and PP-OCRv5 ------------------------------------------------------------------------
CHINESE = ["我们用了三个夏天记录它的水温。", "工程预算共计八十六万元，其余由县财政承担。"]  # noqa: RUF001


def chinese_lines() -> bytes:
    from PIL import ImageDraw, ImageFont

    from pxserve.workers.ocr.visualize import font_path

    font = ImageFont.truetype(font_path(), 28)
    image = Image.new("RGB", (760, 60 + 50 * len(CHINESE)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(CHINESE):
        draw.text((30, 30 + 50 * i), line, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_the_default_reader_is_ppocrv6_small_on_onnx_runtime_whatever_the_engine(work_dir: Path) -> None:
    """configs/OCR.yaml reads with PP-OCRv6 small (PaddlePaddle's ONNX exports, embedded and
    pinned): on either engine it runs on ONNX Runtime and says so; English words kept apart,
    Chinese read exactly. A PaddleX export of a v6 model in model_dir is served as it is."""
    from pxserve.frontend.server import prepare_model
    from pxserve.shared.config import load_pipeline_config
    from pxserve.shared.pipelines import get_pipeline

    shipped = shipped_config(work_dir, "OCR", {"instances_per_device": 1})
    expected = reference("page_region.jpg")["rec_texts"]
    # A PaddleX export in model_dir, served as it is: the same files under another v6 name.
    built = prepare_model(get_pipeline(load_pipeline_config("OCR")), "TextRecognition").path
    export = Path(shutil.copytree(built, work_dir / "PP-OCRv6_tiny_rec", dirs_exist_ok=True))
    spec = yaml.safe_load((export / "inference.yml").read_text())
    spec["Global"]["model_name"] = "PP-OCRv6_tiny_rec"
    (export / "inference.yml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    own = yaml.safe_load(shipped.read_text())
    own["SubModules"]["TextRecognition"].update(model_name="PP-OCRv6_tiny_rec", model_dir=str(export))
    (work_dir / "ocr-v6-export.yaml").write_text(yaml.safe_dump(own, allow_unicode=True))
    for config, flags in ((shipped, []), (work_dir / "ocr-v6-export.yaml", ["--use_hpip"])):
        server = start_server(config, work_dir, *flags)
        try:
            logs = server.logs()
            recognizer = "PP-OCRv6_small_rec" if config == shipped else "PP-OCRv6_tiny_rec"
            for model in ("PP-OCRv6_small_det", recognizer):
                assert f"loaded {model} on cpu with onnxruntime" in logs
            if not flags:
                assert f"{recognizer} exists only as inference.onnx; it runs on ONNX Runtime" in logs
            payload = {"file": b64_file(DATA / "page_region.jpg"), "useTextlineOrientation": False}
            texts = result(post(server, "/ocr", payload))["ocrResults"][0]["prunedResult"]["rec_texts"]
            assert similarity(texts, expected) > 0.9 and any(" " in line for line in texts), texts
            chinese = {"file": b64(chinese_lines()), "useTextlineOrientation": False}
            read = result(post(server, "/ocr", chinese))["ocrResults"][0]["prunedResult"]["rec_texts"]
            same = lambda lines: [unicodedata.normalize("NFKC", line) for line in lines]  # noqa: E731
            assert same(read) == same(CHINESE), read  # full-width punctuation as its ASCII twin
        finally:
            stop_and_check_clean(server)


@pytest.mark.slow
def test_ppocrv5_config_reads_on_both_engines(work_dir: Path) -> None:
    """The shipped OCR_PP-OCRv5 config reads with PP-OCRv5: PaddleX's own v5
    exports, which the default engine runs on ONNX Runtime on CPU (named so: Paddle's oneDNN
    cannot run the detector, a PIR program, and runs the recognizer slower), and with
    --use_hpip. The same detector under another name (a user's own export) starts on Paddle,
    and its worker switches it to its ONNX conversion at oneDNN's first failure, and says so."""
    from pxserve.frontend.server import prepare_model
    from pxserve.shared.config import load_pipeline_config
    from pxserve.shared.pipelines import get_pipeline

    expected = reference("page_region.jpg")["rec_texts"]
    shipped = shipped_config(work_dir, "OCR_PP-OCRv5", {"instances_per_device": 1})
    detector = prepare_model(get_pipeline(load_pipeline_config("OCR_PP-OCRv5")), "TextDetection").path
    own = Path(shutil.copytree(detector, work_dir / "my-v5-det", dirs_exist_ok=True))
    spec = yaml.safe_load((own / "inference.yml").read_text())
    spec["Global"]["model_name"] = "MyTextDetector"
    (own / "inference.yml").write_text(yaml.safe_dump(spec))
    renamed = yaml.safe_load(shipped.read_text())
    renamed["SubModules"]["TextDetection"].update(model_name="MyTextDetector", model_dir=str(own))
    (work_dir / "ocr-own-det.yaml").write_text(yaml.safe_dump(renamed))
    for config, flags in ((shipped, []), (shipped, ["--use_hpip"]), (work_dir / "ocr-own-det.yaml", [])):
        server = start_server(config, work_dir, *flags)
        try:
            payload = {"file": b64_file(DATA / "page_region.jpg"), "useTextlineOrientation": False}
            texts = result(post(server, "/ocr", payload))["ocrResults"][0]["prunedResult"]["rec_texts"]
            assert similarity(texts, expected) > 0.9, texts
            assert any(" " in line for line in texts)  # v5 keeps the spaces between words
            logs = server.logs()
            if config == shipped and not flags:
                assert "PP-OCRv5_mobile_det runs faster on ONNX Runtime than on Paddle on CPU" in logs
                assert "loaded PP-OCRv5_mobile_rec on cpu with onnxruntime" in logs
            elif not flags:
                assert "MyTextDetector: Paddle's oneDNN cannot run this model" in logs
                assert "running it on ONNX Runtime" in logs
        finally:
            stop_and_check_clean(server)
