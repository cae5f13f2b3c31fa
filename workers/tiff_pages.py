"""The frames of a multi-page TIFF as a document's pages (PaddleX 3.7).

A TIFF of several frames sent as an image is read as PaddleX 3.7 reads it:
every frame a page (up to the pipeline's page limit), ``dataInfo`` of type
``"tiff"``. The front tells such a file from an image (shared/image_input.py);
workers/pdf_pages.py fans it out exactly as a PDF, with these functions in
place of pdfium's. Frames are read as they are, not rescaled: one over the
pixel limits is refused with PaddleX's message (``Page k: Image pixel count
...``). Odd frames (1-bit, palette, CMYK, 16-bit or float grey) become 8-bit BGR.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pxserve.shared.errors import RequestError

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
MAX_FRAMES_COUNTED = 100_000  # frames counted for "pages dropped"; a file claiming more is cut here


class TiffError(RequestError):
    """A frame cannot be read or is over the limits; ``status`` is the HTTP status."""


def is_tiff(data: bytes | memoryview) -> bool:
    return bytes(data[:4]) in TIFF_MAGIC


def _open(data: bytes | memoryview) -> Image.Image:
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # sizes are checked here, frame by frame, before any is decoded
    try:
        return Image.open(io.BytesIO(bytes(data)))
    except Exception as exc:  # Pillow raises many types on crafted input
        raise TiffError(422, f"file: not a readable TIFF ({type(exc).__name__})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def frame_sizes(data: bytes | memoryview, count: int) -> tuple[list[tuple[int, int]], int]:
    """(width, height) of the first ``count`` frames, and how many frames the file has."""
    image = _open(data)
    sizes: list[tuple[int, int]] = []
    frames = 0
    try:
        while frames < MAX_FRAMES_COUNTED:
            try:
                image.seek(frames)
            except EOFError:
                break
            except Exception as exc:
                if frames == 0:
                    raise TiffError(422, f"file: not a readable TIFF ({type(exc).__name__})") from None
                break  # a broken directory after good frames: the file ends there
            if frames < count:
                sizes.append(image.size)
            frames += 1
    finally:
        image.close()
    if not frames:
        raise TiffError(422, "file: the TIFF has no frames")
    return sizes, frames


def check_frame_size(number: int, width: int, height: int, max_pixels: int, max_side: int) -> None:
    """PaddleX 3.7's refusal of a page over the pixel limit (this server's limits)."""
    if width < 1 or height < 1:
        raise TiffError(422, f"Page {number}: the frame is {width}x{height}")
    if width * height > max_pixels or max(width, height) > max_side:
        raise TiffError(
            422,
            f"Page {number}: Image pixel count {width * height} (width={width}, height={height}) exceeds "
            f"maximum allowed {max_pixels}. (this server's limits: {max_pixels} pixels, {max_side} px "
            "a side)",
        )


def read_frame(data: bytes | memoryview, index: int, max_pixels: int, max_side: int) -> np.ndarray:
    """Frame ``index`` as a BGR uint8 array, after checking its size."""
    image = _open(data)
    try:
        try:
            image.seek(index)
        except Exception:
            raise TiffError(422, f"file: page {index + 1} of the TIFF cannot be read") from None
        check_frame_size(index + 1, *image.size, max_pixels, max_side)
        try:
            return _to_bgr(image)
        except Exception as exc:
            raise TiffError(422, f"file: page {index + 1} of the TIFF cannot be decoded ({exc})") from None
    finally:
        image.close()


def _to_bgr(frame: Image.Image) -> np.ndarray:
    """Any frame mode as 8-bit BGR: wide grey (16-bit, 32-bit, float) stretched to 0-255."""
    if frame.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = np.asarray(frame, dtype=np.float32)
        low, high = float(grey.min()), float(grey.max())
        grey = (grey - low) * (255.0 / (high - low)) if high > low else np.zeros_like(grey)
        grey = grey.astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    rgb = np.asarray(frame.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])
