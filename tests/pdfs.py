"""Small PDFs built byte by byte for the OCR tests: real ones and hostile ones."""

from __future__ import annotations

import io
import os

from PIL import Image


def from_images(images: list[Image.Image], dpi: float = 72.0) -> bytes:
    """A PDF with one image per page (Pillow's writer): text the OCR can read."""
    buffer = io.BytesIO()
    first, *rest = [image.convert("RGB") for image in images]
    first.save(buffer, format="PDF", save_all=True, append_images=rest, resolution=dpi)
    return buffer.getvalue()


def _assemble(objects: list[bytes], trailer_extra: bytes = b"") -> bytes:
    """Number the objects from 1, write the cross-reference table and trailer."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R " % (len(objects) + 1) + trailer_extra + b">>\n")
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def blank(width_pt: float = 612, height_pt: float = 792, claimed_pages: int | None = None) -> bytes:
    """One blank page; ``claimed_pages`` makes the page tree lie about its size."""
    count = 1 if claimed_pages is None else claimed_pages
    return _assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count %d >>" % count,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %g %g] >>" % (width_pt, height_pt),
        ]
    )


def encrypted() -> bytes:
    """A PDF whose standard security handler needs a password nobody sent."""
    owner, user = os.urandom(32).hex().encode(), os.urandom(32).hex().encode()
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>" % (owner, user)
    file_id = os.urandom(16).hex().encode()
    return _assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
            encrypt,
        ],
        trailer_extra=b"/Encrypt 4 0 R /ID [<%s> <%s>] " % (file_id, file_id),
    )


def text_pages(
    texts: list[str],
    broken: frozenset[int] = frozenset(),
    size_pt: tuple[int, int] = (300, 120),
    font_pt: int = 40,
) -> bytes:
    """One page per text (lines split at newlines), written in Helvetica (a font every PDF
    reader has built in): a long document that is small and quick to read. A page index
    in ``broken`` is an object that is not a page at all, which the reader only finds out
    when it gets there."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for index, text in enumerate(texts):
        kids.append(b"%d 0 R" % (len(objects) + 1))
        if index in broken:
            objects.append(b"<< /Type /Font >>")
            continue
        lines = text.split("\n")
        escaped = [t.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for t in lines]
        shown = " ".join(f"({t}) Tj 0 -{font_pt * 1.5:g} Td" for t in escaped)
        start = size_pt[1] - 2 * font_pt if len(lines) > 1 else 45  # one line: near the bottom
        content = f"BT /F1 {font_pt} Tf 20 {start:g} Td {shown} ET".encode("latin-1")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % (*size_pt, len(objects) + 2)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    return _assemble(objects)
