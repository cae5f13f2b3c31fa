"""Hostile and odd inputs: each gets a correct result or a clear 4xx, never a 500.

A corpus against a real server, then property-based fuzzing (hypothesis) of
the request parser, the image gate and the worker's decoder in-process.
"""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib
from pathlib import Path

import pytest
import requests
from conftest import Server, image_b64, start_server, stop_and_check_clean, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pxserve.shared.config import ServingSettings, load_pipeline_config
from pxserve.shared.errors import RequestError
from pxserve.shared.image_input import ImageLoader, check_image
from pxserve.shared.pipelines import get_pipeline

LIMITS = {"max_pixels": 4_000_000, "max_side": 3000, "max_aspect_ratio": 10, "max_body_mb": 4}


def png_header_only(width: int, height: int) -> bytes:
    """A valid-looking PNG that claims width x height with almost no data: a bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, fmt: str, **save) -> str:
    return image_b64(image, fmt, **save)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, work_dir: Path) -> Server:
    config = write_config(work_dir, tiny_model_dir, serving={"instances_per_device": 1, **LIMITS})
    running = start_server(config, work_dir)
    yield running
    stop_and_check_clean(running)


def red(size=(64, 48), mode="RGB") -> Image.Image:
    return Image.new("RGB", size, (220, 30, 30)).convert(mode)


ACCEPTED = {
    "cmyk jpeg": encoded(red(mode="CMYK"), "JPEG"),
    "16-bit png": encoded(Image.new("I;16", (40, 40), 40000), "PNG"),
    "alpha png": encoded(red(mode="RGBA"), "PNG"),
    "palette png": encoded(red(mode="P"), "PNG"),
    "grayscale jpeg": encoded(red(mode="L"), "JPEG"),
    "bmp": encoded(red(), "BMP"),
    "webp": encoded(red(), "WEBP"),
    "tiff": encoded(red(), "TIFF"),
    "animated gif (first frame)": encoded(red(mode="P"), "GIF", save_all=True, append_images=[red(mode="P")]),
    "exif-rotated jpeg": encoded(
        red((64, 32)), "JPEG", exif=b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0"
    ),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_odd_but_valid_images_get_a_result(server: Server, name: str) -> None:
    response = server.classify({"image": ACCEPTED[name]})
    assert response.status_code == 200, response.text
    assert len(response.json()["result"]["categories"]) == 3


REFUSED = [
    (
        "decompression bomb",
        {"image": b64(png_header_only(30000, 30000))},
        422,
        r"^Image pixel count 900000000 \(width=30000, height=30000\) exceeds maximum allowed 4000000\.",
    ),
    ("side over the limit", {"image": b64(png_header_only(3500, 1000))}, 413, r"side over the limit of 3000"),
    (
        "too elongated",
        {"image": encoded(Image.new("RGB", (1200, 100)), "PNG")},
        422,
        r"more elongated than 10:1",
    ),
    ("format not accepted", {"image": encoded(red(), "PPM")}, 422, r"PPM images are not accepted"),
    ("zero-size header", {"image": b64(png_header_only(0, 10))}, 422, r"image: "),
    ("not an image", {"image": b64(b"%PDF-1.7 not an image")}, 422, r"not an image"),
    ("bad base64", {"image": "@@@@"}, 422, r"not valid Base64"),
    ("only padding", {"image": "===="}, 422, r"image: "),
    ("image is a list", {"image": ["a"]}, 422, r"^image: Input should be a valid string"),
    ("image is null", {"image": None}, 422, r"^image: Input should be a valid string"),
    ("topk float", {"image": "aGk=", "topk": 1.5}, 422, r"^topk: "),
    ("inferenceParams not object", {"image": "aGk=", "inferenceParams": 3}, 422, r"^inferenceParams: "),
]


@pytest.mark.parametrize(("name", "payload", "status", "pattern"), REFUSED, ids=[r[0] for r in REFUSED])
def test_hostile_requests_get_a_clear_4xx(
    server: Server, name: str, payload: dict, status: int, pattern: str
) -> None:
    import re

    response = server.classify(payload)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errorCode"] == status and re.search(pattern, body["errorMsg"]), body


def test_malformed_http_bodies(server: Server) -> None:
    url = f"{server.url}/image-classification"
    for raw in (
        b"",
        b"\xff\xfe\x00",
        b'{"image": "' + b"A" * 100,
        b"[" * 10000,
        b"1e999999",
        b'{"image":"\\ud800"}',
    ):
        response = requests.post(url, data=raw, headers={"Content-Type": "application/json"}, timeout=10)
        assert response.status_code == 422, (raw[:20], response.text)
    assert server.classify({"image": encoded(red(), "PNG")}).status_code == 200  # still serving


# -- property-based fuzzing, in-process ------------------------------------

PIPELINE = get_pipeline(load_pipeline_config("image_classification"))
GATE = ServingSettings(**LIMITS)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "image": JSON_VALUES | st.binary(max_size=64).map(b64),
            "topk": JSON_VALUES,
            "visualize": JSON_VALUES,
            "inferenceParams": JSON_VALUES | st.fixed_dictionaries({"topK": JSON_VALUES}),
        },
    )
)
def test_request_parser_only_ever_refuses_cleanly(payload: dict) -> None:
    from pydantic import ValidationError

    try:
        request = PIPELINE.request_model.model_validate(payload)
        asyncio.run(PIPELINE.parse(request, ImageLoader(PIPELINE.config.Serving)))
    except (ValidationError, RequestError):
        pass


SEED_IMAGES = [
    image_b64(red(), "JPEG"),
    image_b64(red(mode="P"), "PNG"),
    image_b64(red(), "GIF"),
    image_b64(red(), "BMP"),
    image_b64(red(), "WEBP"),
    image_b64(red(), "TIFF"),
]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(SEED_IMAGES).map(base64.b64decode),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
    st.integers(0, 2000),
)
def test_mutated_images_pass_the_gate_and_decode_or_fail_cleanly(seed: bytes, flips: list, cut: int) -> None:
    """Flip bytes and truncate real files; the gate and the decoder may refuse, never crash."""
    from pxserve.workers.preprocess import ImageDecodeError, Preprocessor, decode_image

    data = bytearray(seed)
    for position, value in flips:
        if position < len(data):
            data[position] = value
    data = bytes(data[: max(1, len(data) - cut)])
    try:
        check_image(data, GATE)
    except RequestError as exc:
        assert 400 <= exc.status < 500
        return
    try:
        image = decode_image(data, Preprocessor([{"ResizeImage": {"resize_short": 8}}]).min_source_size)
        assert image.mode == "RGB"
    except ImageDecodeError:
        pass


def test_gate_reads_headers_without_decoding() -> None:
    header = check_image(png_header_only(2000, 1500), GATE)
    assert (header.format, header.width, header.height) == ("PNG", 2000, 1500)
    buffer = io.BytesIO()
    red((10, 10)).save(buffer, "JPEG")
    assert check_image(buffer.getvalue(), GATE).format == "JPEG"


# -- OCR: the /ocr request and the PDF checks the workers run ---------------------------
OCR = get_pipeline(load_pipeline_config("OCR"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "file": JSON_VALUES | st.binary(max_size=64).map(b64) | st.just(b64(b"%PDF-1.4 broken")),
            "fileType": JSON_VALUES | st.sampled_from([0, 1, None]),
            "useTextlineOrientation": JSON_VALUES,
            "useDocUnwarping": JSON_VALUES,
            "textDetLimitSideLen": JSON_VALUES,
            "textDetLimitType": JSON_VALUES | st.sampled_from(["min", "max"]),
            "textDetThresh": JSON_VALUES,
            "textRecScoreThresh": JSON_VALUES,
            "returnWordBox": JSON_VALUES,
        },
    )
)
def test_ocr_request_parser_only_ever_refuses_cleanly(payload: dict) -> None:
    from pydantic import ValidationError

    try:
        request = OCR.request_model.model_validate(payload)
        task = asyncio.run(OCR.parse(request, ImageLoader(OCR.config.Serving)))
    except (ValidationError, RequestError):
        return
    assert task.stage in ("image", "pdf")


def _seed_pdf() -> bytes:
    import pdfs

    return pdfs.from_images([red((60, 40)), red((40, 60))])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=12),
    st.integers(0, 4000),
)
def test_mutated_pdfs_open_and_render_or_fail_cleanly(flips: list, cut: int) -> None:
    """Flip bytes and truncate a real PDF: every step a worker runs either works or
    raises PdfError with a 4xx, never anything else."""
    from pxserve.workers import pdf_pages as pdf

    data = bytearray(_SEED_PDF)
    for position, value in flips:
        if position < len(data):
            data[position] = value
    data = bytes(data[: max(1, len(data) - cut)])
    limits = pdf.PageLimits(max_pixels=4_000_000, max_side=4000)
    try:
        document = pdf.open_pdf(data)
        try:
            count = pdf.page_count(document, 10)
            pdf.page_sizes(document, count, limits)
            for index in range(count):
                assert pdf.render_page(document, index, limits).ndim == 3
        finally:
            document.close()
    except pdf.PdfError as exc:
        assert 400 <= exc.status < 500


_SEED_PDF = _seed_pdf()


def test_pdf_pages_render_at_scale_2_or_smaller_and_only_a_page_too_large_even_at_01_is_refused() -> None:
    """PaddleX 3.7: a page too large at scale 2 is rendered smaller, down to scale 0.1."""
    from pxserve.workers import pdf_pages as pdf

    limits = pdf.PageLimits(max_pixels=4_000_000, max_side=4000)
    assert pdf.render_scale(595, 842, limits) == 2.0  # A4
    for width_pt, height_pt in ((14400, 14400), (14400, 200), (5000, 7000)):
        scale = pdf.render_scale(width_pt, height_pt, limits)
        width, height = pdf.check_page_size(1, width_pt, height_pt, limits)
        assert 0.1 <= scale < 2 and (width, height) == pdf.rendered_size(width_pt, height_pt, scale)
        assert width * height <= limits.max_pixels and max(width, height) <= limits.max_side
        assert width * height > 0.99 * limits.max_pixels or max(width, height) > 0.99 * limits.max_side
    with pytest.raises(pdf.PdfError) as refused:
        pdf.check_page_size(3, 14400, 14400, pdf.PageLimits(max_pixels=1_000_000, max_side=4000))
    assert refused.value.status == 422
    assert str(refused.value).startswith("Page 3: Image pixel count 2073600 (width=1440, height=1440)")
