"""PDFs with a text layer of every kind, built byte by byte, with their truth known.

A typed manual (Helvetica, a title, two heading sizes, a bold run-in heading) and
the ways a layer goes wrong: none (a scan), invisible over a scan (a scanner's
OCR layer), a font with no Unicode map, a map that lies, a rotated page, text
off the page, a picture of text pasted in, 2,000 tiny text objects, and a file
that mixes a typed page with a scanned one.
"""

from __future__ import annotations

import io

import pdfs
from PIL import Image, ImageDraw, ImageFont

A4 = (595, 842)
TITLE = "Field Manual for River Stations"
SECTION = "Installing a logger"
SUBSECTION = "Cleaning the sensor"
RUN_IN = "Scope"
PARAGRAPHS = [
    [
        "Each station holds one temperature logger on a steel rod driven into the bed of",
        "the river, with its sensor a hand below the lowest water of the summer.",
    ],
    [
        "Fix the rod where the current is steady and away from the bank, so that the sun",
        "does not warm the sensor through shallow water in the afternoon.",
    ],
]
RUN_IN_REST = [
    "This manual covers the loggers bought in the spring, their batteries and the",
    "rods that hold them; the older loggers are described in the first edition.",
]
CLEANING = [
    "Wipe the sensor with a soft cloth at every visit and write down the time when",
    "the logger was out of the water, so that the readings can be left out later.",
]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def manual_lines() -> list[tuple[str, str, float, float, float]]:
    """(font, text, size, x, y) of the typed manual, top to bottom; F2 is bold."""
    out = [("F1", TITLE, 20, 72, 760), ("F2", SECTION, 14, 72, 715)]
    y = 690.0
    for paragraph in PARAGRAPHS:
        for line in paragraph:
            out.append(("F1", line, 11, 72, y))
            y -= 15
        y -= 10
    out.append(("F2", RUN_IN, 11, 72, y))
    out.append(("F1", RUN_IN_REST[0], 11, 72 + 36, y))
    for line in RUN_IN_REST[1:]:
        y -= 15
        out.append(("F1", line, 11, 72, y))
    y -= 40
    out.append(("F2", SUBSECTION, 12, 72, y))
    y -= 25
    for line in CLEANING:
        out.append(("F1", line, 11, 72, y))
        y -= 15
    return out


def truth_paragraphs() -> list[str]:
    return [" ".join(p) for p in [*PARAGRAPHS, RUN_IN_REST, CLEANING]]


def _content(lines: list[tuple[str, str, float, float, float]], mode: int = 0) -> bytes:
    ops = [
        f"BT {mode} Tr /{font} {size:g} Tf {x:g} {y:g} Td ({_escape(text)}) Tj ET"
        for font, text, size, x, y in lines
    ]
    return "\n".join(ops).encode("latin-1")


FONTS = b"/Font << /F1 %d 0 R /F2 %d 0 R >>"


def document(pages: list[dict], extra_objects: list[bytes] | None = None) -> bytes:
    """A PDF of ``pages``, each {"content": bytes, "images": {name: jpeg bytes}, "rotate": int,
    "media": (w, h)}; fonts F1 (Helvetica) and F2 (Helvetica-Bold), or ``font`` objects given."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
    fonts = (3, 4)
    for extra in extra_objects or []:
        objects.append(extra)
    kids = []
    for page in pages:
        xobjects = []
        for name, jpeg in page.get("images", {}).items():
            width, height = Image.open(io.BytesIO(jpeg)).size
            objects.append(
                b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n"
                % (width, height, len(jpeg))
                + jpeg
                + b"\nendstream"
            )
            xobjects.append(b"/%s %d 0 R" % (name.encode(), len(objects)))
        content = page["content"]
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        content_ref = len(objects)
        resources = b"<< " + (page.get("fonts") or FONTS % fonts)
        if xobjects:
            resources += b" /XObject << " + b" ".join(xobjects) + b" >>"
        resources += b" >>"
        media = page.get("media", A4)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Rotate %d /Resources %s /Contents %d 0 R >>"
            % (media[0], media[1], page.get("rotate", 0), resources, content_ref)
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    return pdfs._assemble(objects)


def typed(rotate: int = 0) -> bytes:
    return document([{"content": _content(manual_lines()), "rotate": rotate}])


def picture(lines: list[str], size: tuple[int, int] = (1190, 700), font_px: int = 30) -> bytes:
    """Text drawn into a JPEG (a scan), in the font pxserve ships."""
    from pxserve.workers.ocr.visualize import font_path

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(font_path(), font_px)
    for i, line in enumerate(lines):
        draw.text((40, 40 + int(font_px * 1.8) * i), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


FULL_PAGE_IMAGE = b"q %d 0 0 %d 0 0 cm /Im0 Do Q" % A4


def scan_lines() -> list[str]:
    return [line for p in PARAGRAPHS for line in p]


def scanned() -> bytes:
    """A page that is one picture of text: no layer."""
    jpeg = picture(scan_lines(), (1190, 1684))
    return document([{"content": FULL_PAGE_IMAGE, "images": {"Im0": jpeg}}])


def invisible_over_scan() -> bytes:
    """A scan with a scanner's OCR layer over it: invisible text (3 Tr), and here a wrong one."""
    jpeg = picture(scan_lines(), (1190, 1684))
    guesses = [("F1", "scanner guess " * 6, 11.0, 72.0, 700.0 - 15 * i) for i in range(4)]
    layer = _content(guesses, mode=3)
    return document([{"content": FULL_PAGE_IMAGE + b"\n" + layer, "images": {"Im0": jpeg}}])


def _shifted_cmap() -> bytes:
    """A ToUnicode CMap that maps each code to the next letter: the layer lies."""
    body = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Shift def "
        b"1 begincodespacerange <00> <FF> endcodespacerange 1 beginbfrange <20> <7E> <0021> endbfrange "
        b"endcmap CMapName currentdict /CMap defineresource pop end end"
    )
    return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(body), body)


def lying_map() -> bytes:
    """Helvetica drawn right, its ToUnicode shifted by one letter ("Hello" reads "Ifmmp")."""
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 5 0 R >>"
    return document(
        [{"content": _content(manual_lines()), "fonts": b"/Font << /F1 6 0 R /F2 6 0 R >>"}],
        [_shifted_cmap(), font],
    )


def unmapped() -> bytes:
    """A font whose codes name glyphs no map knows, with no ToUnicode: text without meaning."""
    names = b" ".join(b"/g%d" % i for i in range(32, 127))
    font = (
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding << /Type /Encoding "
        b"/Differences [32 " + names + b"] >> >>"
    )
    return document(
        [{"content": _content(manual_lines()), "fonts": b"/Font << /F1 5 0 R /F2 5 0 R >>"}], [font]
    )


def off_the_page() -> bytes:
    """Most of the text drawn outside the page box (clipped away by any viewer)."""
    lines = [(font, text, size, x + 2000, y) for font, text, size, x, y in manual_lines()]
    return document([{"content": _content(lines[:-1] + manual_lines()[-1:])}])


def with_picture_of_text() -> bytes:
    """A typed page with a pasted picture of more text below it (a scanned table of notes)."""
    lines = [line for line in manual_lines() if line[4] > 560]  # title, section, first paragraphs
    jpeg = picture(PICTURE_TEXT, (900, 260), 28)
    place = b"q 400 0 0 116 72 300 cm /Im0 Do Q"
    return document([{"content": _content(lines) + b"\n" + place, "images": {"Im0": jpeg}}])


PICTURE_TEXT = [
    "Notes from the spring visit:",
    "the rod at station four was bent by ice",
    "and has been replaced.",
]


def tiny_objects(count: int = 2000) -> bytes:
    """``count`` text objects of one short word each, 4 pt, in a grid."""
    ops = []
    for i in range(count):
        x, y = 20 + (i % 50) * 11, 820 - (i // 50) * 20
        ops.append(f"BT /F1 4 Tf {x} {y} Td (w{i % 100}) Tj ET")
    return document([{"content": "\n".join(ops).encode()}])


def mixed() -> bytes:
    """A typed page, then a scanned one."""
    jpeg = picture(scan_lines(), (1190, 1684))
    return document(
        [{"content": _content(manual_lines())}, {"content": FULL_PAGE_IMAGE, "images": {"Im0": jpeg}}]
    )
