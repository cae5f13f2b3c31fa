"""The OCR pipeline against a real server with the real embedded models.

Correctness is judged against answers recorded once from PaddleX 3.4.3 on
the same models and settings (benchmarks/paddlex_ocr_reference.py): the
same texts, boxes within 2 px. The text-line orientation stage is compared
on what it is for: lines upside down are turned, upright ones are not.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pdfs
import pytest
import requests
import yaml
from conftest import Server, start_server, stop_and_check_clean, wait_until
from PIL import Image
from rapidfuzz.distance import Levenshtein

DATA = Path(__file__).parent / "data" / "ocr"
PRUNED_KEYS = {
    "model_settings", "dt_polys", "text_det_params", "text_type", "textline_orientation_angles",
    "text_rec_score_thresh", "return_word_box", "rec_texts", "rec_scores", "rec_polys", "rec_boxes",
}  # fmt: skip


def b64_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def reference(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.paddlex.json").read_text())["pages"][0]


def write_ocr_config(folder: Path, serving: dict[str, Any] | None = None, **top: Any) -> Path:
    """The shipped PP-OCRv4 OCR config (PaddleX's answers in tests/data/ocr were recorded with
    those models), with ``serving`` and top-level settings changed."""
    from importlib import resources

    config = yaml.safe_load((resources.files("pxserve.configs") / "OCR_PP-OCRv4.yaml").read_text())
    config["Serving"].update(serving or {})
    config.update(top)
    path = folder / f"ocr-{len(list(folder.glob('ocr-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ocr(server: Server, payload: dict[str, Any], timeout: float = 120) -> requests.Response:
    return requests.post(f"{server.url}/ocr", json=payload, timeout=timeout)


def page_of(response: requests.Response, index: int = 0) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:500]
    return response.json()["result"]["ocrResults"][index]["prunedResult"]


def assert_reads_like_paddlex(pruned: dict[str, Any], expected: dict[str, Any]) -> None:
    assert pruned["rec_texts"] == expected["rec_texts"]
    ours, theirs = np.array(pruned["dt_polys"]), np.array(expected["dt_polys"])
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 2
    assert np.allclose(pruned["rec_scores"], expected["rec_scores"], atol=2e-3)


@pytest.fixture(scope="module")
def server(work_dir: Path) -> Server:
    config = write_ocr_config(work_dir, {"instances_per_device": 2, "cpu_threads": 1, "max_pdf_pages": 2})
    running = start_server(config, work_dir)
    yield running
    stop_and_check_clean(running)


@pytest.mark.slow
def test_reads_what_paddlex_reads(server: Server) -> None:
    for name in ("page_region.jpg", "half_upside_down.jpg"):
        response = ocr(server, {"file": b64_file(DATA / name), "useTextlineOrientation": False})
        assert_reads_like_paddlex(page_of(response), reference(name))


@pytest.mark.slow
def test_result_has_paddlexs_shape(server: Server) -> None:
    response = ocr(server, {"file": b64_file(DATA / "page_region.jpg"), "logId": "client-42"})
    body = response.json()
    assert body["logId"] == "client-42"
    assert body["errorCode"] == 0
    result = body["result"]
    assert result["dataInfo"] == {"width": 712, "height": 218, "type": "image"}
    page = result["ocrResults"][0]
    assert page["ocrImage"] is None and page["inputImage"] is None and page["docPreprocessingImage"] is None
    pruned = page["prunedResult"]
    assert set(pruned) == PRUNED_KEYS
    assert pruned["model_settings"] == {"use_doc_preprocessor": False, "use_textline_orientation": True}
    assert pruned["text_det_params"] == {
        "limit_side_len": 64, "limit_type": "min", "thresh": 0.3, "max_side_limit": 4000,
        "box_thresh": 0.6, "unclip_ratio": 1.5,
    }  # fmt: skip
    assert len(pruned["rec_boxes"]) == len(pruned["rec_polys"]) == len(pruned["rec_texts"])
    for box, poly in zip(pruned["rec_boxes"], pruned["rec_polys"], strict=True):
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        assert box == [min(xs), min(ys), max(xs), max(ys)]


@pytest.mark.slow
def test_orientation_turns_upside_down_lines_and_leaves_upright_ones(server: Server) -> None:
    turned = page_of(ocr(server, {"file": b64_file(DATA / "half_upside_down.jpg")}))
    assert turned["textline_orientation_angles"] == [0, 0, 0, 0, 180, 180, 180]
    assert all("MIME" in text or "specification" in text for text in turned["rec_texts"][4:])
    upright = page_of(ocr(server, {"file": b64_file(DATA / "page_top.jpg"), "useTextlineOrientation": True}))
    assert set(upright["textline_orientation_angles"]) == {0}  # long English lines: none turned over
    assert upright["rec_texts"] == reference("page_top.jpg")["rec_texts"]


@pytest.mark.slow
def test_one_pages_lines_spread_over_the_workers(server: Server) -> None:
    """17 lines (3 recognition batches): the page fans out, and still reads as PaddleX."""

    def batches() -> float:
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        return float(re.search(r'^pxserve_batch_size_count\{pipeline="OCR"\} (\S+)$', text, re.M).group(1))

    before = batches()
    response = ocr(server, {"file": b64_file(DATA / "page_top.jpg"), "useTextlineOrientation": False})
    assert_reads_like_paddlex(page_of(response), reference("page_top.jpg"))
    # the page, a group of lines for each of the 2 workers, and putting it together
    wait_until(lambda: batches() - before >= 4, 10, "the worker batches to be counted")
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'pxserve_model_batch_size_count{model="PP-OCRv4_mobile_rec"}' in text
    assert 'pxserve_model_batch_size_count{model="PP-OCRv4_mobile_det"}' in text


@pytest.mark.slow
def test_visualize_draws_the_page_and_its_text(server: Server) -> None:
    page = ocr(server, {"file": b64_file(DATA / "page_region.jpg"), "visualize": True}).json()["result"]
    drawn = Image.open(io.BytesIO(base64.b64decode(page["ocrResults"][0]["ocrImage"])))
    original = Image.open(io.BytesIO(base64.b64decode(page["ocrResults"][0]["inputImage"])))
    assert drawn.format == original.format == "JPEG"
    assert original.size == (712, 218)
    assert drawn.size == (2 * 712, 218)  # the page beside its text
    right = np.asarray(drawn.convert("L"))[:, 712:]
    assert (right < 128).mean() > 0.01  # text was drawn on the white half


@pytest.mark.slow
def test_pdf_pages_are_read_up_to_the_limit(server: Server) -> None:
    region = Image.open(DATA / "page_region.jpg")
    document = pdfs.from_images([region, region.rotate(0), region])  # 3 pages; the server reads 2
    for file_type in (0, None):  # None: told apart by the bytes
        payload = {"file": b64(document), "useTextlineOrientation": False}
        if file_type is not None:
            payload["fileType"] = file_type
        result = ocr(server, payload).json()["result"]
        assert result["dataInfo"] == {
            "numPages": 2, "pages": [{"width": 1424, "height": 436}] * 2, "type": "pdf",
        }  # fmt: skip
        assert len(result["ocrResults"]) == 2
        for page in result["ocrResults"]:
            assert any("MIME" in text for text in page["prunedResult"]["rec_texts"])


@pytest.mark.slow
def test_every_setting_is_honoured_per_request(server: Server) -> None:
    file = b64_file(DATA / "page_region.jpg")
    default = page_of(ocr(server, {"file": file}))
    strict = page_of(ocr(server, {"file": file, "textDetBoxThresh": 0.95, "textRecScoreThresh": 0.99}))
    assert strict["text_det_params"]["box_thresh"] == 0.95
    assert strict["text_rec_score_thresh"] == 0.99
    assert len(strict["dt_polys"]) < len(default["dt_polys"])
    assert all(score >= 0.99 for score in strict["rec_scores"])
    small = page_of(ocr(server, {"file": file, "textDetLimitSideLen": 320, "textDetLimitType": "max"}))
    assert small["text_det_params"]["limit_type"] == "max"
    assert small["dt_polys"] != default["dt_polys"]  # detected on a 320 px image, mapped back
    off = page_of(ocr(server, {"file": file, "useTextlineOrientation": False}))
    assert off["textline_orientation_angles"] == [-1] * len(off["dt_polys"])
    assert off["model_settings"]["use_textline_orientation"] is False


@pytest.mark.slow
def test_an_image_without_text_gives_empty_lists(server: Server) -> None:
    pruned = page_of(ocr(server, {"file": b64_file(DATA / "blank.png")}))
    assert pruned["dt_polys"] == [] and pruned["rec_texts"] == [] and pruned["rec_boxes"] == []


def _bad_inputs() -> list[tuple[str, dict[str, Any], int, str]]:
    region = (DATA / "page_region.jpg").read_bytes()
    pdf = pdfs.from_images([Image.open(DATA / "page_region.jpg")])
    noise = b64(bytes(range(256)) * 8)
    not_an_image = "file: the data is not an image"
    return [
        ("not Base64", {"file": "%%% not base64 %%%"}, 422, "file: is not valid Base64"),
        ("random bytes", {"file": noise, "fileType": 1}, 422, not_an_image),
        ("random bytes, no type", {"file": noise}, 422, not_an_image),
        ("a PDF sent as an image", {"file": b64(pdf), "fileType": 1}, 422, "is a PDF; send fileType 0"),
        ("an image sent as a PDF", {"file": b64(region), "fileType": 0}, 422, "is not a PDF"),
        ("a truncated PDF", {"file": b64(pdf[: len(pdf) // 3]), "fileType": 0}, 422, "file:"),
        ("a malformed PDF", {"file": b64(b"%PDF-1.7\n" + bytes(range(256)) * 4)}, 422, "not a readable PDF"),
        ("an encrypted PDF", {"file": b64(pdfs.encrypted()), "fileType": 0}, 422, "encrypted"),
        ("a PDF claiming 100000 pages", {"file": b64(pdfs.blank(claimed_pages=100000))}, 422, "100000"),
        ("doc unwarping asked for", {"file": b64(region), "useDocUnwarping": True}, 422, "useDocUnwarping: "),
        ("a bad limit type", {"file": b64(region), "textDetLimitType": "middle"}, 422, "textDetLimitType"),
        ("a threshold over 1", {"file": b64(region), "textDetThresh": 1.5}, 422, "textDetThresh"),
        ("fileType 2", {"file": b64(region), "fileType": 2}, 422, "fileType"),
    ]  # fmt: skip


@pytest.mark.slow
def test_bad_input_gets_a_clear_4xx_and_no_worker_dies(server: Server) -> None:
    workers = sorted(server.workers())
    for name, payload, status, fragment in _bad_inputs():
        started = time.monotonic()
        response = ocr(server, payload, timeout=60)
        body = response.json()
        assert (response.status_code, body["errorCode"]) == (status, status), f"{name}: {body}"
        assert fragment in body["errorMsg"], f"{name}: {body['errorMsg']}"
        assert time.monotonic() - started < 10, f"{name} took {time.monotonic() - started:.1f} s"
    assert sorted(server.workers()) == workers  # none crashed or was replaced
    assert "Traceback" not in server.logs()


@pytest.mark.slow
def test_a_page_too_large_at_scale_2_is_rendered_smaller_as_paddlex_37_does(server: Server) -> None:
    """A 200 x 200 inch page would be 28800 px a side at PaddleX's scale 2: it is read at the
    largest scale within the limits (PaddleX 3.7), and dataInfo says the size it was read at."""
    response = ocr(server, {"file": b64(pdfs.blank(14400, 14400))}, timeout=60)
    assert response.status_code == 200, response.text
    size = response.json()["result"]["dataInfo"]["pages"][0]
    from pxserve.shared.config import ServingSettings

    limits = ServingSettings()  # the fixture's server keeps the default limits
    assert 1440 <= size["width"] == size["height"] <= limits.max_side
    assert size["width"] * size["height"] <= limits.max_pixels


def flat(lines: list[str]) -> str:
    return "".join(lines).replace(" ", "")


def tiff(frames: list[Image.Image], **save: Any) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:], **save)
    return buffer.getvalue()


@pytest.mark.slow
def test_a_multi_page_tiff_is_read_page_by_page_as_paddlex_37_does(server: Server) -> None:
    """Every frame a page, dataInfo type "tiff", odd frames (1-bit, CMYK, 16-bit grey) read;
    pages over max_pdf_pages dropped and said so; a frame over the pixel limit refused with
    PaddleX 3.7's message; a one-frame TIFF stays an image."""
    small = Image.open(DATA / "page_region.jpg").convert("RGB")
    page = small.resize((small.width * 2, small.height * 2), Image.LANCZOS)  # as scanned at twice the dpi
    wide_grey = Image.fromarray((np.asarray(page.convert("L"), np.uint16) * 257).astype(np.uint16))
    expected = reference("page_region.jpg")["rec_texts"]
    bilevel = page.convert("L").point(lambda v: 255 if v > 170 else 0, mode="1")  # as a fax scan is
    for frames in ([page, bilevel], [page.convert("CMYK"), wide_grey]):
        response = ocr(server, {"file": b64(tiff(frames)), "fileType": 1})
        answer = response.json()["result"]
        assert answer["dataInfo"] == {
            "type": "tiff",
            "numPages": 2,
            "pages": [{"width": page.width, "height": page.height}] * 2,
        }
        for number, entry in enumerate(answer["ocrResults"]):
            texts = entry["prunedResult"]["rec_texts"]
            read = Levenshtein.normalized_similarity(flat(texts), flat(expected))
            assert read > 0.8, (frames[number].mode, texts)  # thresholding small text costs some letters
    three = ocr(server, {"file": b64(tiff([page, page, page]))})  # fileType left out: told by the bytes
    assert three.status_code == 200 and three.headers["X-Pxserve-Pages-Dropped"] == "1"
    assert len(three.json()["result"]["ocrResults"]) == 2
    huge = tiff([Image.new("1", (64, 64), 1), Image.new("1", (9000, 9000), 1)], compression="group4")
    refused = ocr(server, {"file": b64(huge), "fileType": 1})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errorMsg"].startswith(
        "Page 2: Image pixel count 81000000 (width=9000, height=9000) exceeds maximum allowed 64000000."
    )
    single = ocr(server, {"file": b64(tiff([page])), "fileType": 1}).json()["result"]["dataInfo"]
    assert single["type"] == "image"


@pytest.mark.slow
def test_ocr_reads_a_pdfs_own_text_only_when_asked(server: Server) -> None:
    """/ocr keeps PaddleX's behaviour (OCR, no extra field) unless usePdfTextLayer is true; then
    a typed page's lines come from its layer, exactly, and a scanned page is read by OCR."""
    import text_layers

    document = b64(text_layers.mixed())
    plain = ocr(server, {"file": document}).json()["result"]["ocrResults"]
    assert all("text_layer_res" not in page["prunedResult"] for page in plain)
    typed, scanned = ocr(server, {"file": document, "usePdfTextLayer": True, "returnWordBox": True}).json()[
        "result"
    ]["ocrResults"]
    pruned = typed["prunedResult"]
    assert pruned["text_layer_res"] == {"used": True, "reason": ""}
    expected = [text for _, text, *_ in text_layers.manual_lines()]
    expected[expected.index(text_layers.RUN_IN) : expected.index(text_layers.RUN_IN) + 2] = [
        f"{text_layers.RUN_IN} {text_layers.RUN_IN_REST[0]}"
    ]  # the bold word and the rest of its row: one line
    assert pruned["rec_texts"] == expected
    assert len(pruned["text_word"]) == len(pruned["rec_texts"]) and set(pruned["rec_scores"]) == {1.0}
    assert scanned["prunedResult"]["text_layer_res"] == {"used": False, "reason": "it has no text layer"}
    read = flat(scanned["prunedResult"]["rec_texts"])
    assert Levenshtein.normalized_similarity(read, flat(text_layers.scan_lines())) > 0.9


@pytest.mark.slow
def test_hpip_serves_the_same_text_with_onnx_runtime(work_dir: Path) -> None:
    config = write_ocr_config(work_dir, {"instances_per_device": 1})
    hpip = start_server(config, work_dir, "--use_hpip")
    try:
        assert "converting PP-OCRv4_mobile_rec to ONNX" in hpip.logs() or "cached ONNX" in hpip.logs()
        response = ocr(hpip, {"file": b64_file(DATA / "page_region.jpg"), "useTextlineOrientation": False})
        assert_reads_like_paddlex(page_of(response), reference("page_region.jpg"))
        assert "with onnxruntime" in hpip.logs()
    finally:
        stop_and_check_clean(hpip)


@pytest.mark.slow
def test_word_boxes_split_each_line_into_its_words(server: Server) -> None:
    plain = page_of(ocr(server, {"file": b64_file(DATA / "page_region.jpg")}))
    assert "text_word" not in plain
    pruned = page_of(ocr(server, {"file": b64_file(DATA / "page_region.jpg"), "returnWordBox": True}))
    assert pruned["return_word_box"] is True
    assert len(pruned["text_word"]) == len(pruned["text_word_region"]) == len(pruned["rec_texts"])
    for text, words, regions, box in zip(
        pruned["rec_texts"], pruned["text_word"], pruned["text_word_region"], pruned["rec_boxes"], strict=True
    ):
        assert "".join(words) == text.replace(" ", "")
        assert len(regions) == len(words)
        starts = [min(p[0] for p in quad) for quad in regions]
        assert starts == sorted(starts)  # left to right along the line
        for quad in regions:  # inside the line's box, give or take a pixel
            assert all(box[0] - 2 <= x <= box[2] + 2 and box[1] - 2 <= y <= box[3] + 2 for x, y in quad)


def working(pid: int) -> bool:
    """The process used most of a core over half a second (an idle worker only beats)."""

    def cpu_seconds() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        before = cpu_seconds()
        time.sleep(0.5)
        return cpu_seconds() - before > 0.25
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_an_input_that_crashes_two_workers_gets_a_422(work_dir: Path) -> None:
    """Stands in for a PDF that crashes pdfium: each worker holding it dies of SIGSEGV."""

    config = write_ocr_config(work_dir, {"instances_per_device": 1, "max_pdf_pages": 10})
    single = start_server(config, work_dir)
    try:
        region = Image.open(DATA / "page_top.jpg")
        document = pdfs.from_images([region] * 10)
        answers: list[requests.Response] = []
        thread = threading.Thread(
            target=lambda: answers.append(ocr(single, {"file": b64(document)}, timeout=300)), daemon=True
        )
        thread.start()
        killed: list[int] = []
        for _ in range(2):
            worker = wait_until(
                lambda: next((w for w in single.workers() if w not in killed), None), 90, "a worker"
            )
            wait_until(  # ready (so not busy loading the models), and busy: with the PDF
                lambda w=worker: (
                    requests.get(f"{single.url}/health", timeout=5).status_code == 200 and working(w)
                ),
                90,
                "the worker to be busy with the PDF",
            )
            os.kill(worker, signal.SIGSEGV)  # as a PDF library crashing on the file would
            killed.append(worker)
        thread.join(timeout=240)
        assert answers and answers[0].status_code == 422, answers[0].text if answers else "no answer"
        assert "crashed the worker processing it twice (SIGSEGV)" in answers[0].json()["errorMsg"]
        wait_until(lambda: requests.get(f"{single.url}/health", timeout=5).status_code == 200, 60, "recovery")
        again = ocr(single, {"file": b64_file(DATA / "page_region.jpg")})
        assert again.status_code == 200  # the server healed and serves
    finally:
        stop_and_check_clean(single)


def test_a_stage_the_server_was_started_without_is_a_422_not_a_500(work_dir: Path) -> None:
    """PaddleX answers 500 here; pxserve refuses at the front, saying why."""
    import asyncio

    from pxserve.shared.config import ServingSettings, load_pipeline_config
    from pxserve.shared.errors import RequestError
    from pxserve.shared.image_input import ImageLoader
    from pxserve.shared.pipelines import get_pipeline

    config = yaml.safe_load(write_ocr_config(work_dir).read_text())
    del config["SubModules"]["TextLineOrientation"]
    config["use_textline_orientation"] = False
    path = work_dir / "ocr-no-orientation.yaml"
    path.write_text(yaml.safe_dump(config))
    pipeline = get_pipeline(load_pipeline_config(str(path)))
    assert pipeline.model_keys() == ["TextDetection", "TextRecognition"]
    request = pipeline.request_model.model_validate(
        {"file": b64_file(DATA / "page_region.jpg"), "useTextlineOrientation": True}
    )
    with pytest.raises(RequestError) as refused:
        asyncio.run(pipeline.parse(request, ImageLoader(ServingSettings())))
    assert refused.value.status == 422
    assert "started without a text-line orientation model" in refused.value.message
