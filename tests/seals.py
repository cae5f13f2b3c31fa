"""Seal images whose text is known, for the seal tests and benchmarks.

A seal as companies stamp them: a red ring, the name running clockwise
around the top inside it (each character upright to the ring), a star,
and a horizontal line of text under the star. Drawn with PIL from fonts
every machine here has (DejaVu; for Chinese the wqy-microhei font that
the ``paperang-p2-fonts-cjk`` wheel carries, which pxserve's own
visualisation uses).
"""

from __future__ import annotations

import io
import math
from importlib import resources
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

LATIN = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
RED = (205, 30, 30)


def cjk_font() -> str:
    return str(resources.files("paperang_p2_fonts_cjk") / "fonts" / "wqy-microhei.ttc")


def seal(
    ring_text: str, centre_text: str, cjk: bool = False, size: int = 480, arc: float = 240.0
) -> Image.Image:
    """The seal: ``ring_text`` spread over ``arc`` degrees around the top, ``centre_text`` below."""
    face = ImageFont.truetype(cjk_font() if cjk else LATIN, size // 11)
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    centre, radius = size / 2, size / 2 - 12
    draw.ellipse([centre - radius, centre - radius, centre + radius, centre + radius], outline=RED, width=8)
    text_radius = radius - size / 11
    step = arc / max(len(ring_text) - 1, 1)
    for i, char in enumerate(ring_text):
        angle = -arc / 2 + i * step  # degrees clockwise from the top
        glyph = Image.new("RGBA", (size // 8, size // 8), (255, 255, 255, 0))
        ImageDraw.Draw(glyph).text((size // 16, size // 16), char, fill=RED, font=face, anchor="mm")
        glyph = glyph.rotate(-angle, resample=Image.BICUBIC)
        x = centre + text_radius * math.sin(math.radians(angle))
        y = centre - text_radius * math.cos(math.radians(angle))
        image.paste(glyph, (int(x - glyph.width / 2), int(y - glyph.height / 2)), glyph)
    star = [
        (
            centre + (size / 9 if k % 2 == 0 else size / 22) * math.sin(math.radians(k * 36)),
            centre - size / 30 - (size / 9 if k % 2 == 0 else size / 22) * math.cos(math.radians(k * 36)),
        )
        for k in range(10)
    ]
    draw.polygon(star, fill=RED)
    draw.text((centre, centre + size / 5), centre_text, fill=RED, font=face, anchor="mm")
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


CASES = {  # file name -> (ring text, centre text, arc in degrees)
    "seal_contract.png": ("上海市浦江科技有限公司", "合同专用章", 200.0),
    "seal_finance.png": ("北京文档服务股份有限公司", "财务专用章", 240.0),
}


def save_all(folder: Path) -> None:
    """Write the seal images the tests use (for recording PaddleX's answers on them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (ring, centre, arc) in CASES.items():
        (folder / name).write_bytes(png(seal(ring, centre, cjk=True, arc=arc)))
    (folder / "seal_no_text.png").write_bytes(png(seal("", "", cjk=True)))


if __name__ == "__main__":
    import sys

    save_all(Path(sys.argv[1]))
