"""PDF pages as images, rendered in workers at PaddleX's scale (2: 144 dpi); a multi-page
TIFF's frames as pages the same way (workers/tiff_pages.py).

A building block for every pipeline that takes PDFs: :func:`fan_out_pages`
checks a whole file and fans it out as one task per page (each runs on the
PDF payload, on any worker) with a continuation that gets every page's
result; the pipeline says which of its stages reads a page and which puts
the document together.

Every failure a hostile or broken file can cause is turned into
:class:`PdfError` with a message for the client (a 4xx), checked before any
pixel is rendered: unreadable, encrypted, no pages, a page whose rendering
would exceed the server's pixel limits. pdfium is C++: if a file crashes it
outright, the crash takes only this worker, which the supervisor replaces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from pxserve.shared.errors import RequestError
from pxserve.shared.messages import PARENT_PAYLOAD, DocumentPages, FanOut, Outcome, Task
from pxserve.shared.stages import StageTable
from pxserve.workers import tiff_pages

RENDER_SCALE = 2.0  # PaddleX renders PDF pages at scale 2 (72 dpi -> 144 dpi)
# A page too large for the limits at scale 2 is rendered smaller, as PaddleX 3.7 does, down to
# this scale (its PADDLE_PDX_PDF_MIN_RENDER_SCALE); below it the page is refused.
MIN_RENDER_SCALE = 0.1
POINTS_PER_INCH = 72.0


class PdfError(RequestError):
    """The file cannot be read as a PDF; ``status`` is the HTTP status to answer."""


@dataclass(frozen=True)
class PageLimits:
    """What one page may cost, and how many pages a streamed request reads."""

    max_pixels: int
    max_side: int
    max_stream_pages: int = 1000  # Serving.max_stream_pages


def open_pdf(data: bytes | memoryview):  # -> pypdfium2.PdfDocument
    import pypdfium2

    try:
        return pypdfium2.PdfDocument(bytes(data))
    except pypdfium2.PdfiumError as exc:
        reason = str(exc).lower()
        if "password" in reason or "security" in reason:
            raise PdfError(
                422, "file: the PDF is encrypted (password-protected); send it decrypted"
            ) from None
        raise PdfError(422, f"file: not a readable PDF ({exc})") from None


def page_count(document, max_pages: int) -> int:
    """Pages to process: the document's, at most ``max_pages`` (PaddleX drops the rest)."""
    count = len(document)
    if count < 1:
        raise PdfError(422, "file: the PDF has no pages")
    return min(count, max_pages)


def render_page(document, index: int, limits: PageLimits) -> np.ndarray:
    """One page as a BGR uint8 array at PaddleX's scale (smaller for a page too large for the
    limits: :func:`render_scale`), after checking its size."""
    import pypdfium2

    try:
        page = document[index]
    except (pypdfium2.PdfiumError, IndexError) as exc:
        raise PdfError(422, f"file: page {index + 1} of the PDF cannot be read ({exc})") from None
    try:
        check_page_size(index + 1, *page.get_size(), limits)
        scale = render_scale(*page.get_size(), limits)
        try:
            bitmap = page.render(scale=scale)
        except pypdfium2.PdfiumError as exc:
            raise PdfError(422, f"file: page {index + 1} cannot be rendered ({exc})") from None
        pixels = bitmap.to_numpy()
        if pixels.ndim == 2:  # a grey bitmap
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        return np.ascontiguousarray(pixels[:, :, :3])  # pdfium's order is BGR(x)
    finally:
        page.close()


def render_one(data: bytes | memoryview, index: int, limits: PageLimits) -> np.ndarray:
    """Page ``index`` of the PDF in ``data``, rendered (a ``page`` stage's whole job); of a
    multi-page TIFF, its frame."""
    if tiff_pages.is_tiff(data):
        return tiff_pages.read_frame(data, index, limits.max_pixels, limits.max_side)
    document = open_pdf(data)
    try:
        return render_page(document, index, limits)
    finally:
        document.close()


def check_page_size(number: int, width_pt: float, height_pt: float, limits: PageLimits) -> tuple[int, int]:
    """The page's rendered size (at :func:`render_scale`), or PdfError when it has no area or is
    too large for the limits even at ``MIN_RENDER_SCALE``."""
    if not (width_pt > 0 and height_pt > 0 and math.isfinite(width_pt * height_pt)):
        raise PdfError(422, f"file: page {number} has no area ({width_pt:g} x {height_pt:g} pt)")
    width, height = rendered_size(width_pt, height_pt, render_scale(width_pt, height_pt, limits))
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise PdfError(
            422,
            f"Page {number}: Image pixel count {width * height} (width={width}, height={height}) exceeds "
            f"maximum allowed {limits.max_pixels}. The page is {width_pt / POINTS_PER_INCH:.1f} x "
            f"{height_pt / POINTS_PER_INCH:.1f} in, too large even at "
            f"{MIN_RENDER_SCALE * POINTS_PER_INCH:g} dpi "
            f"(the limits: {limits.max_pixels} pixels, {limits.max_side} px a side)",
        )
    return width, height


def render_scale(width_pt: float, height_pt: float, limits: PageLimits) -> float:
    """PaddleX's scale 2, or the largest smaller one at which the page fits the limits (never
    below ``MIN_RENDER_SCALE``: a page that does not fit there fails :func:`check_page_size`)."""
    fits = min(
        math.sqrt(limits.max_pixels / (width_pt * height_pt)), limits.max_side / max(width_pt, height_pt)
    )
    if fits >= RENDER_SCALE:
        return RENDER_SCALE
    scale = max(fits, MIN_RENDER_SCALE)
    while scale > MIN_RENDER_SCALE:  # pdfium rounds up: step down until the rounded size fits too
        width, height = rendered_size(width_pt, height_pt, scale)
        if width * height <= limits.max_pixels and max(width, height) <= limits.max_side:
            break
        scale = max(scale * 0.999, MIN_RENDER_SCALE)
    return scale


def page_sizes(document, count: int, limits: PageLimits, strict: bool = True) -> list[tuple[int, int] | None]:
    """(width, height) of the first ``count`` pages as rendered, for ``dataInfo``; all checked.

    Not ``strict``: a page that fails its check is None here, and fails when it is rendered.
    """
    import pypdfium2

    sizes: list[tuple[int, int] | None] = []
    for index in range(count):
        try:
            try:
                width_pt, height_pt = document.get_page_size(index)
            except pypdfium2.PdfiumError as exc:
                raise PdfError(
                    422,
                    f"file: page {index + 1} of the {len(document)} the PDF claims cannot be read ({exc})",
                ) from None
            sizes.append(check_page_size(index + 1, width_pt, height_pt, limits))
        except PdfError:
            if strict:
                raise
            sizes.append(None)
    return sizes


def rendered_size(width_pt: float, height_pt: float, scale: float = RENDER_SCALE) -> tuple[int, int]:
    """Pixels pdfium renders a page of this size into at ``scale`` (it rounds up)."""
    return math.ceil(width_pt * scale), math.ceil(height_pt * scale)


def fan_out_pages(
    task: Task,
    max_pages: int,
    limits: PageLimits,
    page_task: Callable[[int], Task],
    document_task: Callable[[dict[str, Any]], Task],
) -> Outcome:
    """Check the PDF in ``task``'s payload, then fan out ``page_task(index)`` for each page read.

    ``document_task(data_info)`` continues with PaddleX's ``dataInfo`` for a
    PDF (numPages, each page's rendered size); page tasks should carry
    PARENT_PAYLOAD so the file is not copied back through the rings.

    A streamed task reads up to ``limits.max_stream_pages`` instead of
    ``max_pages``, and a page that fails its checks fails when its turn
    comes, after the pages before it were sent; otherwise every page is
    checked before any is rendered.
    """
    wanted = limits.max_stream_pages if task.streamed else max_pages
    if tiff_pages.is_tiff(task.image):
        sizes, in_file, kind = *_tiff_sizes(task.image, wanted, limits, strict=not task.streamed), "tiff"
        count = len(sizes)
    else:
        document = open_pdf(task.image)
        try:
            in_file, kind = len(document), "pdf"
            count = page_count(document, wanted)
            sizes = page_sizes(document, count, limits, strict=not task.streamed)
        finally:
            document.close()
    pages = [{"width": size[0], "height": size[1]} if size else None for size in sizes]
    info = {"numPages": count, "pages": pages, "type": kind}
    plan = FanOut([page_task(i) for i in range(count)], document_task(info), DocumentPages(info, in_file))
    return Outcome.fan_out(task.request_id, plan)


def _tiff_sizes(
    data: bytes | memoryview, count: int, limits: PageLimits, strict: bool
) -> tuple[list[tuple[int, int] | None], int]:
    """:func:`page_sizes` for a multi-page TIFF's frames, and the frames in the file."""
    frames, in_file = tiff_pages.frame_sizes(data, count)
    sizes: list[tuple[int, int] | None] = []
    for number, (width, height) in enumerate(frames, 1):
        try:
            tiff_pages.check_frame_size(number, width, height, limits.max_pixels, limits.max_side)
            sizes.append((width, height))
        except tiff_pages.TiffError:
            if strict:
                raise
            sizes.append(None)
    return sizes, in_file


class DocumentParams(BaseModel):
    """A PDF whose pages were read: its dataInfo, and each page's result (the engine fills in
    ``children``). The parameters of every pipeline's ``document`` stage."""

    data_info: dict[str, Any]
    children: list[dict[str, Any]] = []


def split_by_stages(
    task: Task,
    params: BaseModel,
    stages: StageTable,
    stage_name: Callable[[str], str],
    max_pages: int,
    limits: PageLimits,
) -> Outcome:
    """:func:`fan_out_pages` for a runner whose stages are called ``page`` and ``document``:
    each page task is ``params`` with its ``page`` set, on the PDF payload."""
    return fan_out_pages(
        task,
        max_pages,
        limits,
        lambda i: stages["page"].task(params.model_copy(update={"page": i}), PARENT_PAYLOAD, stage_name),
        lambda info: stages["document"].task(DocumentParams(data_info=info), b"", stage_name),
    )
