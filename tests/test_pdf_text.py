"""A PDF page's own text (workers/pdf_text.py) on the PDFs of tests/text_layers.py, without a server:
what each layer gives, and how the check by OCR decides and remembers."""

from __future__ import annotations

import numpy as np
import pytest
import text_layers

from pxserve.workers import pdf_pages, pdf_text

LIMITS = pdf_pages.PageLimits(64_000_000, 16_384)


def layer_of(data: bytes, index: int = 0) -> tuple[pdf_text.PageText, np.ndarray]:
    image = pdf_pages.render_one(data, index, LIMITS)
    return pdf_text.read_page_text(data, index, (image.shape[1], image.shape[0])), image


def test_a_typed_page_gives_its_lines_words_fonts_and_boxes_on_the_rendered_page() -> None:
    text, image = layer_of(text_layers.typed())
    assert text.usable and text.reason == ""
    expected = [t for _, t, *_ in text_layers.manual_lines()]
    run_in = expected.index(text_layers.RUN_IN)
    expected[run_in : run_in + 2] = [f"{text_layers.RUN_IN} {text_layers.RUN_IN_REST[0]}"]
    assert [line.text for line in text.lines] == expected
    title, section, *_ = text.lines
    assert (title.size, section.size) == (20, 14) and all(section.bold) and not any(title.bold)
    scope = text.lines[run_in]
    assert scope.bold[:2] == [True, False]  # the run-in heading, then its paragraph
    height, width = image.shape[:2]
    assert text.scale == pytest.approx(width / text_layers.A4[0])
    x0, y0, x1, y1 = title.box  # the title at 72 pt from the left, 760 pt up the page
    assert x0 == pytest.approx(72 * text.scale, abs=2) and 0 < y0 < y1 < height * (1 - 740 / 842)
    assert image[int(y0) : int(y1), int(x0) : int(x1)].min() < 100  # ink where the layer says


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("scanned", "it has no text layer"),
        ("invisible_over_scan", "its text is invisible"),
        ("unmapped", "its fonts have no usable Unicode map"),
        ("off_the_page", "its text lies outside the page box"),
    ],
)
def test_layers_that_cannot_be_read_say_why(name: str, reason: str) -> None:
    text, _ = layer_of(getattr(text_layers, name)())
    assert not text.usable and text.reason.startswith(reason)


def test_a_turned_page_and_a_mixed_file_decide_page_by_page() -> None:
    turned, _ = layer_of(text_layers.typed(rotate=90))
    assert not turned.usable and "sideways" in turned.reason
    data = text_layers.mixed()
    assert layer_of(data, 0)[0].usable and layer_of(data, 1)[0].reason == "it has no text layer"
    pasted, _ = layer_of(text_layers.with_picture_of_text())
    (picture,) = pasted.images
    below = (picture[0], picture[1], picture[2], picture[3])
    assert pdf_text.regions_without_text(pasted, [below, pasted.lines[0].box]) == [0]


def test_the_check_reads_one_line_when_it_settles_it_and_remembers_each_files_verdict() -> None:
    calls: list[int] = []

    def reader(answers: list[str]):  # stands in for the recognizer: what OCR would read
        def read(crops: list[np.ndarray]) -> list[str]:
            calls.append(len(crops))
            return [answers[len(calls) - 1]] * len(crops)

        return read

    text, image = layer_of(text_layers.typed())
    longest, second, third = (
        line.text for line in sorted(text.lines, key=lambda line: -len(line.text.replace(" ", "")))[:3]
    )
    check = pdf_text.LayerCheck(reader([longest]))
    assert check.reason_against(text, image) == "" and calls == [1]
    assert check.reason_against(text, image) == "" and calls == [1]  # remembered
    lying, lying_image = layer_of(text_layers.lying_map())
    calls.clear()
    check = pdf_text.LayerCheck(reader(["Field Manual for River Stations"] * 3))
    assert "does not match" in check.reason_against(lying, lying_image) and calls == [1]
    assert "does not match" in check.reason_against(lying, lying_image) and calls == [1]
    calls.clear()
    doubtful = longest[: len(longest) * 3 // 5]  # 40% missing: two more lines decide
    check = pdf_text.LayerCheck(reader([doubtful, second, third]))
    assert check.reason_against(text, image) == "" and calls == [1, 1, 1]


def test_a_landscape_page_turned_by_its_rotate_key_reads_upright_from_its_layer() -> None:
    """Text drawn turned a quarter in the file, on a page whose /Rotate turns it back: upright as
    shown, so its layer is used, with boxes on the rendered (landscape) page."""
    lines = [
        f"BT /F1 12 Tf 0 1 -1 0 {300 + 20 * i} 100 Tm (Landscape line {i} reads upright) Tj ET"
        for i in range(3)
    ]
    data = text_layers.document([{"content": "\n".join(lines).encode(), "rotate": 90}])
    text, image = layer_of(data)
    assert image.shape[1] > image.shape[0]  # shown as landscape
    assert text.usable and [line.text for line in text.lines] == [
        f"Landscape line {i} reads upright" for i in range(3)
    ]
    boxes = [line.box for line in text.lines]
    assert all(x1 - x0 > 5 * (y1 - y0) for x0, y0, x1, y1 in boxes)
    assert [box[1] for box in boxes] == sorted(box[1] for box in boxes)  # top to bottom as shown
