"""``ocrImage``: the page with its text boxes, beside the text read from them.

PaddleX's layout: the input with each box outlined on the left, a white
canvas with each line's text set inside its box on the right, scaled to fit
2000x2000, as JPEG. The text needs a font with CJK glyphs; it comes from a
Python package (wqy-microhei, in ``paperang-p2-fonts-cjk``) or, failing that,
a system Noto CJK / WenQuanYi font; nothing is downloaded.
"""

from __future__ import annotations

import functools
import io
import logging
from importlib import resources
from pathlib import Path

import numpy as np
import pybase64
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger("pxserve.ocr")

MAX_SIDE = 2000
SYSTEM_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


@functools.cache
def font_path() -> str | None:
    """The CJK font file to draw with, or None (then only Latin text is drawn correctly)."""
    try:
        packaged = resources.files("paperang_p2_fonts_cjk") / "fonts" / "wqy-microhei.ttc"
        if packaged.is_file():
            return str(packaged)
    except ModuleNotFoundError:
        pass
    found = next((p for p in SYSTEM_FONTS if Path(p).is_file()), None)
    if found is None:
        log.warning("no CJK font found; ocrImage will show non-Latin text as boxes")
    return found


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def _color(i: int) -> tuple[int, int, int]:
    """A fixed, distinct colour per line (PaddleX draws random ones)."""
    rng = np.random.default_rng(i)
    return tuple(int(v) for v in rng.integers(0, 200, 3))  # type: ignore[return-value]


def draw_ocr(rgb: Image.Image, polys: list[list[list[int]]], texts: list[str]) -> Image.Image:
    width, height = rgb.size
    left = rgb.copy()
    right = Image.new("RGB", (width, height), (255, 255, 255))
    draw_left, draw_right = ImageDraw.Draw(left), ImageDraw.Draw(right)
    for i, (poly, text) in enumerate(zip(polys, texts, strict=True)):
        color = _color(i)
        points = [tuple(p) for p in poly]
        draw_left.polygon(points, outline=color, width=2)
        draw_right.polygon(points, outline=color, width=1)
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        box_w, box_h = max(xs) - min(xs), max(ys) - min(ys)
        if not text or box_w < 2 or box_h < 2:
            continue
        size = max(8, int(min(box_h * 0.8, box_w / max(len(text), 1) * 1.6)))
        font = _font(min(size, 256))
        draw_right.text((min(xs) + 2, min(ys)), text, fill=(0, 0, 0), font=font)
    canvas = Image.new("RGB", (width * 2, height), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (width, 0))
    return canvas


def to_jpeg_base64(image: Image.Image) -> str:
    image = image.copy()
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return pybase64.b64encode(buffer.getvalue()).decode("ascii")


def bgr_to_image(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))


def side_by_side(original: np.ndarray, page) -> Image.Image:  # page: workers.doc_preprocessor.Preprocessed
    """PaddleX's docPreprocessingImage: the input, turned, unwarped, each captioned (BGR in)."""
    panels = [
        ("Original Image", original),
        (f"Rotated Image ({page.orientation}, {page.angle})", page.image),
        (f"Unwarping Image ({page.unwarping})", page.image),
    ]
    height = max(p.shape[0] for _, p in panels)
    width = sum(p.shape[1] for _, p in panels)
    canvas = Image.new("RGB", (width, height + 25), (255, 255, 255))
    draw, left = ImageDraw.Draw(canvas), 0
    for caption, pixels in panels:
        canvas.paste(bgr_to_image(pixels), (left, 0))
        draw.text((left + 10, height + 2), caption, fill=(0, 0, 0), font=_font(18))
        left += pixels.shape[1]
    return canvas


def draw_regions(bgr: np.ndarray, layout: dict) -> Image.Image:
    """PaddleX's layout_det_res image: each detected region outlined and labelled."""
    drawn = bgr_to_image(bgr)
    draw = ImageDraw.Draw(drawn)
    for region in layout.get("boxes", []):
        box = [int(v) for v in region["coordinate"]]
        draw.rectangle(box, outline=(0, 128, 255), width=3)
        draw.text(
            (box[0] + 4, box[1] + 2),
            f"{region['label']} {region['score']:.2f}",
            fill=(0, 128, 255),
            font=_font(18),
        )
    return drawn
