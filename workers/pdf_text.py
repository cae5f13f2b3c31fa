"""A PDF page's own text: its lines, words and boxes, and whether they can be trusted.

pxserve's extension to PP-StructureV3 (PaddleX always runs OCR): a
born-digital PDF carries its words exactly, with their fonts, so reading
them costs a fraction of OCR and gets every character right. The decision is
made per page, and a page falls back to OCR when its layer is not what the
page shows:

* no text at all (a scan), or only a few characters;
* text that is invisible (render mode 3 or 7: a scanner's OCR layer laid
  over the image; that layer is the scanner's guess, not the document);
* fonts without a usable Unicode map (pdfium flags the character, or it
  maps to private-use or replacement characters);
* text mostly outside the page (clipped, or drawn off the page box);
* text that does not match what the page shows, found by reading a few of
  its lines with OCR (workers/structure/runner.py does that check; a layer
  whose fonts were checked before on this worker is trusted at once).

Where only part of a page is a picture with text in it (a scanned table
pasted into a typed report), :func:`regions_without_text` names the layout
regions that need OCR; the rest comes from the layer.

Coordinates are the rendered page's pixels (pdfium's page-to-device
transform: the page's rotation and crop box applied, at the size the page
was rendered). Every pdfium call here reads; none can change the file.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import statistics
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pxserve.workers.page_images import crop_box

Box = tuple[float, float, float, float]

FINGERPRINT_BYTES = 1 << 16  # a file is known by its length and its first 64 KiB
MIN_CHARACTERS = 8  # fewer visible characters than this: no text layer to speak of
MAX_INVISIBLE_SHARE = 0.5
MAX_UNMAPPED_SHARE = 0.02
MAX_OUTSIDE_SHARE = 0.2
MAX_TURNED_SHARE = 0.5  # text not left to right as shown: a turned page (or only margin notes)
LINE_GAP_EMS = 1.5  # a horizontal gap this many font sizes wide ends a line (the next column)
SOFT_HYPHEN = 2  # what pdfium gives for a hyphen that breaks a word at the end of a line
INVISIBLE_MODES = (3, 7)  # FPDF_TEXTRENDERMODE_INVISIBLE, _CLIP
IMAGE_OBJECT = 3  # FPDF_PAGEOBJ_IMAGE
_BOLD_NAME = re.compile(r"bold|black|heavy|demi|semibold|[-,]bd\b|cmbx|\bbx", re.IGNORECASE)


@dataclass
class LayerLine:
    """One line of the layer: its text, box and words, its font size (points) and which words are bold."""

    words: list[tuple[str, Box]]
    size: float
    bold: list[bool]

    @property
    def text(self) -> str:
        return " ".join(word for word, _ in self.words)

    @property
    def box(self) -> Box:
        return union([box for _, box in self.words])


@dataclass
class PageText:
    """A page's layer, or the reason it is not used (``reason`` empty: usable)."""

    lines: list[LayerLine] = field(default_factory=list)
    reason: str = ""
    fonts: frozenset[str] = frozenset()  # the fonts its text is set in, and the file's
    # fingerprint: what a check by OCR vouches for (one check a document and font set)
    images: list[Box] = field(default_factory=list)  # image objects on the page, in pixels
    characters: int = 0
    scale: float = 1.0  # pixels per point

    @property
    def usable(self) -> bool:
        return not self.reason and bool(self.lines)


def union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _unmapped(code: int) -> bool:
    """A character no font map produced: private use, replacement, a control character, or no
    character at all (a lone surrogate, beyond Unicode: it could not even be sent as JSON)."""
    return (
        0xE000 <= code <= 0xF8FF
        or 0xD800 <= code <= 0xDFFF
        or code > 0x10FFFF
        or code in (0xFFFD, 0xFFFE)
        or (code < 0x20 and code not in (9, 10, 13))
    )


def read_page_text(data: bytes | memoryview, index: int, size: tuple[int, int]) -> PageText:
    """Page ``index``'s text layer, in the pixels of the page rendered at ``size`` (width, height)."""
    import pypdfium2
    import pypdfium2.raw as pdfium

    data = bytes(data)
    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError:
        return PageText(reason="the PDF cannot be opened for its text")
    fingerprint = f"file:{hashlib.blake2b(data[:FINGERPRINT_BYTES], digest_size=16).hexdigest()}:{len(data)}"
    try:
        page = document[index]
        try:
            textpage = page.get_textpage()
            try:
                found = _read(pdfium, page, textpage, size)
                found.fonts = found.fonts | {fingerprint}
                return found
            finally:
                textpage.close()
        finally:
            page.close()
    except pypdfium2.PdfiumError as exc:
        return PageText(reason=f"its text cannot be read ({exc})")
    finally:
        document.close()


def _read(pdfium, page, textpage, size: tuple[int, int]) -> PageText:
    width, height = size
    count = pdfium.FPDFText_CountChars(textpage)
    if count <= 0:
        return PageText(reason="it has no text layer", images=_images(pdfium, page, size))

    scale = width / max(1.0, float(pdfium.FPDF_GetPageWidthF(page)))  # pixels per point
    rect = pdfium.FS_RECTF()
    name = ctypes.create_string_buffer(128)
    flags = ctypes.c_int()
    modes: dict[int, int] = {}
    upright: dict[int, bool] = {}
    visible = invisible = unmapped = outside = turned = 0
    fonts: set[str] = set()
    lines: list[LayerLine] = []
    words: list[tuple[str, Box]] = []
    bold: list[bool] = []
    sizes: list[float] = []
    word, word_boxes, word_bold = "", [], []
    last: Box | None = None

    def end_word() -> None:
        nonlocal word, word_boxes, word_bold
        if word:
            words.append((word, union(word_boxes)))
            bold.append(sum(word_bold) * 2 > len(word_bold))
        word, word_boxes, word_bold = "", [], []

    def end_line() -> None:
        nonlocal words, bold, sizes, last
        end_word()
        if words:
            lines.append(LayerLine(words, statistics.median(sizes) if sizes else 0.0, bold))
        words, bold, sizes, last = [], [], [], None

    for i in range(count):
        code = pdfium.FPDFText_GetUnicode(textpage, i)
        if code in (10, 13):
            end_line()
            continue
        if code in (0, 9, 32, 0xA0) or (code <= 0x10FFFF and chr(code).isspace()):
            end_word()
            continue
        if code == SOFT_HYPHEN or pdfium.FPDFText_IsHyphen(textpage, i) == 1:
            code = ord("-")  # a word broken at the line's end: joined again with the next row
        elif pdfium.FPDFText_IsGenerated(textpage, i) == 1:
            continue
        obj = pdfium.FPDFText_GetTextObject(textpage, i)
        key = ctypes.cast(obj, ctypes.c_void_p).value or 0
        if key not in modes:
            modes[key] = pdfium.FPDFTextObj_GetTextRenderMode(obj) if obj else 0
            upright[key] = _runs_across(pdfium, page, textpage, i, size)
        if modes[key] in INVISIBLE_MODES:
            invisible += 1
            continue
        visible += 1
        if not upright[key]:  # sideways or upside down as shown (a turned page, a margin note)
            turned += 1
            continue
        if _unmapped(code) or pdfium.FPDFText_HasUnicodeMapError(textpage, i) == 1:
            unmapped += 1
            continue
        if not pdfium.FPDFText_GetLooseCharBox(textpage, i, ctypes.byref(rect)):
            continue
        corners = [
            _to_pixels(pdfium, page, size, x, y)
            for x in (rect.left, rect.right)
            for y in (rect.top, rect.bottom)
        ]
        box = union([(x, y, x, y) for x, y in corners])
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        if not (0 <= centre[0] < width and 0 <= centre[1] < height):
            outside += 1
            continue
        font_size = float(pdfium.FPDFText_GetFontSize(textpage, i))
        em = max(1.0, font_size * scale)
        if last is not None and (
            box[0] - last[2] > LINE_GAP_EMS * em  # a wide gap: the next column
            or box[2] < last[0] - em  # a step back
            or abs((box[1] + box[3]) - (last[1] + last[3])) / 2 > 0.8 * em  # another baseline
        ):
            end_line()
        pdfium.FPDFText_GetFontInfo(textpage, i, name, len(name), ctypes.byref(flags))
        font = name.value.decode("latin-1", "replace")
        fonts.add(font)
        weight = pdfium.FPDFText_GetFontWeight(textpage, i)
        word += unicodedata.normalize("NFC", chr(code))
        word_boxes.append(box)
        word_bold.append(weight >= 550 or bool(flags.value & (1 << 18)) or bool(_BOLD_NAME.search(font)))
        sizes.append(font_size)
        last = box
    end_line()
    found = PageText(lines, "", frozenset(fonts), _images(pdfium, page, size), visible, scale)
    if visible < MIN_CHARACTERS:
        found.reason = "it has no text layer" if not visible else "its text layer holds almost nothing"
        if invisible >= MIN_CHARACTERS:
            found.reason = "its text is invisible (a scanner's OCR layer over the picture)"
    elif invisible > MAX_INVISIBLE_SHARE * (visible + invisible):
        found.reason = "its text is invisible (a scanner's OCR layer over the picture)"
    elif unmapped > MAX_UNMAPPED_SHARE * visible:
        found.reason = "its fonts have no usable Unicode map"
    elif outside > MAX_OUTSIDE_SHARE * visible:
        found.reason = "its text lies outside the page box"
    elif turned > MAX_TURNED_SHARE * visible:
        found.reason = "its text runs sideways or upside down as the page is shown"
    return found


def _to_pixels(pdfium, page, size: tuple[int, int], x: float, y: float) -> tuple[int, int]:
    """A point of the page (points, PDF space) in the pixels of the page rendered at ``size``."""
    dx, dy = ctypes.c_int(), ctypes.c_int()
    pdfium.FPDF_PageToDevice(page, 0, 0, size[0], size[1], 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
    return dx.value, dy.value


def _runs_across(pdfium, page, textpage, index: int, size: tuple[int, int]) -> bool:
    """Whether character ``index`` runs left to right as the page is shown (its text matrix's
    direction through the page's rotation)."""
    matrix = pdfium.FS_MATRIX()
    x, y = ctypes.c_double(), ctypes.c_double()
    if not pdfium.FPDFText_GetMatrix(textpage, index, ctypes.byref(matrix)):
        return True
    if not pdfium.FPDFText_GetCharOrigin(textpage, index, ctypes.byref(x), ctypes.byref(y)):
        return True
    length = max(1e-6, (matrix.a**2 + matrix.b**2) ** 0.5)
    ends = [
        _to_pixels(pdfium, page, size, x.value + step * matrix.a / length, y.value + step * matrix.b / length)
        for step in (0.0, 100.0)
    ]
    across, down = ends[1][0] - ends[0][0], ends[1][1] - ends[0][1]
    return across > 0 and abs(down) <= 0.2 * across


def _images(pdfium, page, size: tuple[int, int]) -> list[Box]:
    """The page's image objects (top level), in pixels."""
    width, height = size
    found = []
    left, bottom, right, top = (ctypes.c_float() for _ in range(4))
    for i in range(pdfium.FPDFPage_CountObjects(page)):
        obj = pdfium.FPDFPage_GetObject(page, i)
        if pdfium.FPDFPageObj_GetType(obj) != IMAGE_OBJECT:
            continue
        if not pdfium.FPDFPageObj_GetBounds(obj, *(ctypes.byref(v) for v in (left, bottom, right, top))):
            continue
        corners = [
            _to_pixels(pdfium, page, size, x, y)
            for x in (left.value, right.value)
            for y in (bottom.value, top.value)
        ]
        x0, y0, x1, y1 = union([(x, y, x, y) for x, y in corners])
        box = (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
        if box[2] > box[0] and box[3] > box[1]:
            found.append(box)
    return found


def split_in_regions(
    lines: list[LayerLine], regions: list[Box], scale: float, ems: float = 0.6
) -> list[LayerLine]:
    """Lines that cross a region (a table) cut where a gap between words is wider than ``ems``
    font sizes: a table's cells are set apart by less than a column of text is, but by more
    than a word space. ``scale``: pixels per point."""
    out = []
    for line in lines:
        if not any(_overlap(line.box, region) > 0 for region in regions) or len(line.words) < 2:
            out.append(line)
            continue
        gap = ems * max(1.0, line.size) * scale
        start = 0
        for i in range(1, len(line.words) + 1):
            if i == len(line.words) or line.words[i][1][0] - line.words[i - 1][1][2] > gap:
                out.append(LayerLine(line.words[start:i], line.size, line.bold[start:i]))
                start = i
    return out


def regions_without_text(text: PageText, regions: list[Box]) -> list[int]:
    """Indices of ``regions`` (layout boxes that hold text) that lie on an image of the page and
    have no layer text: what OCR must read there."""
    need = []
    for index, region in enumerate(regions):
        area = max(1.0, (region[2] - region[0]) * (region[3] - region[1]))
        if not any(_overlap(region, image) > 0.5 * area for image in text.images):
            continue
        if not any(_overlap(line.box, region) > 0 for line in text.lines):
            need.append(index)
    return need


def _overlap(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def as_ocr_result(lines: list[LayerLine], det_params: dict) -> dict:
    """The lines as PaddleX's OCR prunedResult (with word boxes), as if OCR had read them:
    score 1, quads of their boxes. ``text_layer_fonts`` adds each line's font size and bold words."""
    quads = [_quad(line.box) for line in lines]
    return {
        "model_settings": {"use_doc_preprocessor": False, "use_textline_orientation": False},
        "dt_polys": quads,
        "text_det_params": det_params,
        "text_type": "general",
        "textline_orientation_angles": [-1] * len(lines),
        "text_rec_score_thresh": 0.0,
        "return_word_box": True,
        "rec_texts": [line.text for line in lines],
        "rec_scores": [1.0] * len(lines),
        "rec_polys": quads,
        "rec_boxes": [[int(v) for v in line.box] for line in lines],
        "text_word": [[w for w, _ in line.words] for line in lines],
        "text_word_region": [[_quad(box) for _, box in line.words] for line in lines],
        "text_layer_fonts": [[round(line.size, 2), line.bold] for line in lines],
    }


def with_ocr_lines(layer: dict, ocr: dict | None, regions: list[list[float]]) -> dict:
    """The layer's OCR-shaped result with OCR's lines whose centre lies in one of ``regions``
    (pictures of text the layer does not have) added; the layer alone without OCR."""
    if not ocr or not regions:
        return layer
    merged = {key: list(value) if isinstance(value, list) else value for key, value in layer.items()}
    words, word_regions = ocr.get("text_word") or [], ocr.get("text_word_region") or []
    for i, box in enumerate(ocr.get("rec_boxes") or []):
        x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not any(r[0] <= x <= r[2] and r[1] <= y <= r[3] for r in regions):
            continue
        for key in ("rec_texts", "rec_scores", "rec_polys", "rec_boxes"):
            merged[key].append(ocr[key][i])
        merged["dt_polys"].append(ocr["rec_polys"][i])
        merged["textline_orientation_angles"].append(-1)
        merged["text_word"].append(words[i] if i < len(words) else [])
        merged["text_word_region"].append(word_regions[i] if i < len(word_regions) else [])
        merged["text_layer_fonts"].append([0.0, []])
    return merged


# Checking a layer against the page: this many of its longest lines read by OCR; a median
# character error above MAX_CHECK_ERROR means the layer is not what the page shows.
CHECKED_LINES = 3
MAX_CHECK_ERROR = 0.35
CLEAR_MATCH, CLEAR_MISMATCH = 0.1, 0.6  # one line's error that settles it without the others
MAX_REMEMBERED = 256  # (file, fonts) whose verdict a worker remembers


class LayerCheck:
    """A worker's check of layers against their pages by OCR, once per file and font set: the
    verdict is remembered (bounded, oldest forgotten first), so only a file's first page pays.
    ``read_lines`` reads line crops with OCR. The longest line is read first; it settles a
    clear case (a match, or a lying map) alone, and only a doubtful one reads two more."""

    def __init__(self, read_lines: Callable[[list[np.ndarray]], list[str]]) -> None:
        self.read_lines = read_lines
        self.verdicts: OrderedDict[frozenset[str], str] = OrderedDict()  # fonts -> reason ("" fine)

    def reason_against(self, text: PageText, image: np.ndarray) -> str:
        """ "" when the layer reads as ``image`` (the rendered page) shows; else why not."""
        if text.fonts in self.verdicts:
            self.verdicts.move_to_end(text.fonts)
            return self.verdicts[text.fonts]
        longest = sorted(text.lines, key=lambda line: -len(line.text.replace(" ", "")))[:CHECKED_LINES]
        sample = [line for line in longest if len(line.text.replace(" ", "")) >= 4]
        if not sample:
            return ""
        errors = [self._error(sample[0], image)]
        if CLEAR_MATCH < errors[0] <= CLEAR_MISMATCH:
            errors += [self._error(line, image) for line in sample[1:]]
        error = sorted(errors)[len(errors) // 2]
        reason = ""
        if error > MAX_CHECK_ERROR:
            reason = (
                f"its text does not match what the page shows (OCR of {len(errors)} of its lines "
                f"differs by {error:.0%})"
            )
        self.verdicts[text.fonts] = reason
        while len(self.verdicts) > MAX_REMEMBERED:
            self.verdicts.popitem(last=False)
        return reason

    def _error(self, line: LayerLine, image: np.ndarray) -> float:
        x0, y0, x1, y1 = line.box  # pixel boxes: their last row and column included
        (read,) = self.read_lines([np.ascontiguousarray(crop_box(image, (x0, y0, x1 + 1, y1 + 1), pad=2))])
        return _distance(line.text, read)


def _distance(expected: str, found: str) -> float:
    """Character error of ``found`` against ``expected``, whitespace and width forms aside."""
    from rapidfuzz.distance import Levenshtein

    flat = lambda text: re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))  # noqa: E731
    return Levenshtein.normalized_distance(flat(expected), flat(found))


def _quad(box: Box) -> list[list[int]]:
    x0, y0, x1, y1 = (round(v) for v in box)
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
