"""Table images whose HTML is known, for the table tests and benchmarks.

The content is real (Python's release schedule, CPython's own numbers);
the rendering is PIL's with DejaVu Sans (Debian's fonts-dejavu-core, on
every machine this project runs on), grid lines as a word processor draws
them. :func:`table_page` puts a table between paragraphs on an A4-shaped
page, for layout detection.
"""

from __future__ import annotations

import html as html_escape
import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

RELEASES = [
    ["Version", "Released", "End of life", "Status"],
    ["3.13", "2024-10-07", "2029-10", "bugfix"],
    ["3.12", "2023-10-02", "2028-10", "security"],
    ["3.11", "2022-10-24", "2027-10", "security"],
    ["3.10", "2021-10-04", "2026-10", "security"],
]
UNITS = [
    ["Quantity", "Unit", "Symbol"],
    ["length", "metre", "m"],
    ["mass", "kilogram", "kg"],
    ["time", "second", "s"],
    ["electric current", "ampere", "A"],
    ["temperature", "kelvin", "K"],
    ["amount of substance", "mole", "mol"],
]


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(FONT, size)


def truth_html(rows: list[list[str]], header: bool = True) -> str:
    """The table as SLANet writes HTML (PubTabNet's form: thead for the first row)."""

    def row(cells: list[str]) -> str:
        return "<tr>" + "".join(f"<td>{html_escape.escape(c, quote=False)}</td>" for c in cells) + "</tr>"

    head = f"<thead>{row(rows[0])}</thead>" if header else ""
    body = "".join(row(r) for r in (rows[1:] if header else rows))
    return f"<html><body><table>{head}<tbody>{body}</tbody></table></body></html>"


def draw_table(rows: list[list[str]], size: int = 24, pad: int = 14) -> Image.Image:
    face = font(size)
    columns = len(rows[0])
    widths = [max(int(face.getlength(r[c])) for r in rows) + 2 * pad for c in range(columns)]
    line = size + 2 * pad
    width, height = sum(widths) + 3, line * len(rows) + 3
    image = Image.new("RGB", (width + 20, height + 20), "white")
    draw = ImageDraw.Draw(image)
    x0, y0 = 10, 10
    for r, cells in enumerate(rows):
        x = x0
        for c, text in enumerate(cells):
            draw.text((x + pad, y0 + r * line + pad), text, fill="black", font=face)
            x += widths[c]
    for r in range(len(rows) + 1):
        draw.line([(x0, y0 + r * line), (x0 + sum(widths), y0 + r * line)], fill="black", width=2)
    x = x0
    for c in range(columns + 1):
        draw.line([(x, y0), (x, y0 + line * len(rows))], fill="black", width=2)
        x += widths[c] if c < columns else 0
    return image


PARAGRAPH = (
    "Python releases are supported for five years: two years of bugfix releases, then three of "
    "security fixes only. The table below lists the versions that are still supported."
)


def table_page(rows: list[list[str]]) -> Image.Image:
    """An A4-shaped page (1240x1754): a title, a paragraph, the table, another paragraph."""
    page = Image.new("RGB", (1240, 1754), "white")
    draw = ImageDraw.Draw(page)
    draw.text((120, 140), "Release schedule", fill="black", font=font(44))
    y = 240
    for start in range(0, len(PARAGRAPH), 70):
        draw.text((120, y), PARAGRAPH[start : start + 70], fill="black", font=font(26))
        y += 40
    table = draw_table(rows)
    page.paste(table, (120, y + 40))
    y += 80 + table.height
    for start in range(0, len(PARAGRAPH), 70):
        draw.text((120, y), PARAGRAPH[start : start + 70], fill="black", font=font(26))
        y += 40
    return page


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_all(folder: Path) -> None:
    """Write the images the tests use (for recording PaddleX's answers on them)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "releases.png").write_bytes(png(draw_table(RELEASES)))
    (folder / "units.png").write_bytes(png(draw_table(UNITS)))


if __name__ == "__main__":
    import sys

    save_all(Path(sys.argv[1]))
