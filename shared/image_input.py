"""From the ``image`` field of a request to encoded bytes that passed the gate.

PaddleX accepts Base64 or an http(s) URL. URL fetching is off by default (a
URL then gets a 422 that says so); when ``Serving.url_inputs.enabled`` is
set, the front's fetcher (frontend/url_fetch.py) is handed to the loader.

The gate reads only the image header (Pillow opens lazily): format, width
and height are checked against the ``Serving`` limits before a worker ever
decodes the pixels, so a few-kilobyte decompression bomb costs microseconds
and never reaches a ring.
"""

from __future__ import annotations

import binascii
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pybase64
from PIL import Image, UnidentifiedImageError

from pxserve.shared.config import ServingSettings
from pxserve.shared.errors import RequestError, invalid


@dataclass(frozen=True, slots=True)
class ImageHeader:
    format: str
    width: int
    height: int


Fetcher = Callable[[str, str], Awaitable[bytes]]  # (url, the request's field) -> its content
PDF_MAGIC = b"%PDF-"


def is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def decode_base64_field(value: str, field: str = "image") -> bytes:
    text = value.strip()
    if not text:
        raise invalid(field, "must not be empty")
    if is_url(text):
        raise invalid(field, "URL inputs are disabled on this server; send the image file's bytes as Base64")
    if text.startswith("data:") and "," in text[:100]:
        text = text.split(",", 1)[1]  # tolerate a data: URI prefix
    if "\n" in text or "\r" in text:
        text = "".join(text.split())  # wrapped Base64, as the base64 tool writes it
    try:
        # SIMD base64 (pybase64): 0.2 ms instead of 6 ms for a 12-MP photo,
        # which is most of what the single front process spends per request.
        data = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(field, "is not valid Base64") from None
    if not data:
        raise invalid(field, "decodes to no bytes")
    return data


def check_image(data: bytes, limits: ServingSettings, field: str = "image") -> ImageHeader:
    """Read the header only and enforce format, pixel, side and aspect limits."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below says more; only the header is read
    try:
        with Image.open(io.BytesIO(data)) as image:
            header = ImageHeader(str(image.format), *image.size)
    except UnidentifiedImageError:
        raise invalid(field, "the data is not an image in a format this server reads") from None
    except Exception as exc:  # Pillow's header parsers raise many types on crafted input
        raise invalid(field, f"the image header could not be read ({type(exc).__name__})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    allowed = [f.upper() for f in limits.image_formats]
    if header.format.upper() not in allowed:
        raise invalid(field, f"{header.format} images are not accepted (accepted: {', '.join(allowed)})")
    width, height = header.width, header.height
    if width < 1 or height < 1:
        raise invalid(field, f"the image is {width}x{height}")
    if width * height > limits.max_pixels:  # PaddleX 3.7's status and words, with this server's limit
        raise RequestError(
            422,
            f"Image pixel count {width * height} (width={width}, height={height}) exceeds maximum allowed "
            f"{limits.max_pixels}. ({field}: {width * height / 1e6:.1f} MP, over this server's limit of "
            f"{limits.max_pixels / 1e6:g} MP, Serving.max_pixels)",
        )
    if max(width, height) > limits.max_side:
        raise RequestError(
            413, f"{field}: {width}x{height} has a side over the limit of {limits.max_side} px"
        )
    if max(width, height) / min(width, height) > limits.max_aspect_ratio:
        raise invalid(field, f"{width}x{height} is more elongated than {limits.max_aspect_ratio:g}:1")
    return header


def read_by_pages(data: bytes) -> bool:
    """Whether a file that passed :meth:`ImageLoader.read_document` is read page by page: a PDF,
    or a TIFF of several frames."""
    return PDF_MAGIC in data[:1024] or (data[:4] in (b"II*\x00", b"MM\x00*") and has_several_frames(data))


def has_several_frames(data: bytes) -> bool:
    """Whether a TIFF has a second frame: then it is read page by page, as PaddleX 3.7 does
    (workers/tiff_pages.py); only the second frame's directory is read here."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(1)
        return True
    except Exception:  # EOFError: one frame; anything else: read as the one image it starts with
        return False
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit


class ImageLoader:
    """Base64 or (when a fetcher is given) URL -> bytes that passed the gate."""

    def __init__(self, limits: ServingSettings, fetch: Fetcher | None = None) -> None:
        self.limits = limits
        self.fetch = fetch

    async def load(self, value: str, field: str = "image") -> bytes:
        data = await self.read(value, field)
        check_image(data, self.limits, field)
        return data

    async def read(self, value: str, field: str = "image") -> bytes:
        """The file's bytes, Base64-decoded or fetched, before any format check."""
        text = value.strip()
        if self.fetch is not None and is_url(text):
            return await self.fetch(text, field)
        return decode_base64_field(text, field)

    async def read_document(
        self, value: str, file_type: int | None, field: str = "file"
    ) -> tuple[bytes, bool]:
        """An image or PDF field (PaddleX's ``file`` + ``fileType``): its bytes, and whether
        it is read page by page: a PDF, or (PaddleX 3.7) a TIFF of several frames. ``fileType``
        None: told apart by the bytes (or a URL's ``.pdf``)."""
        data = await self.read(value, field)
        is_pdf = PDF_MAGIC in data[:1024]
        if file_type is None:
            by_name = is_url(value) and value.split("?")[0].lower().endswith(".pdf")
            file_type = 0 if is_pdf or by_name else 1
        if file_type == 1:
            if is_pdf:
                raise invalid(field, "fileType is 1 (image) but the file is a PDF; send fileType 0")
            header = check_image(data, self.limits, field)
            return data, header.format == "TIFF" and has_several_frames(data)
        elif not is_pdf:
            raise invalid(field, "fileType is 0 (PDF) but the file is not a PDF (no %PDF- header)")
        return data, True
