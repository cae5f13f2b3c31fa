"""Pixels of documents in workers: decoding, encoding and turning pages.

What every document pipeline does with an image besides running a model:
read an encoded file as BGR (as PaddleX reads files, with OpenCV), hand a
page to another stage losslessly (PNG: a stage downstream must see exactly
these pixels), answer it as Base64, and turn it by a multiple of 90 degrees
the way PaddleX's document preprocessor does.
"""

from __future__ import annotations

import cv2
import numpy as np
import pybase64

from pxserve.shared.errors import RequestError

MAX_OUTPUT_SIDE = 2000  # PaddleX scales output images to fit 2000x2000


def decode_bgr(data: bytes | memoryview) -> np.ndarray:
    """Encoded image -> BGR uint8, upright (EXIF applied), as PaddleX reads files with OpenCV."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is not None:
        return image
    from pxserve.workers.preprocess import ImageDecodeError, decode_image

    try:  # formats OpenCV does not read (GIF): Pillow
        return np.ascontiguousarray(np.asarray(decode_image(data))[:, :, ::-1])
    except ImageDecodeError as exc:
        raise RequestError(422, f"file: {exc}") from None


def encode_png(image: np.ndarray) -> bytes:
    """Lossless, and fast rather than small: for a stage downstream, not for a client."""
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("OpenCV could not encode an image as PNG")
    return encoded.tobytes()


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes() if ok else b""


def fit_output(image: np.ndarray) -> np.ndarray:
    """Scaled down to fit PaddleX's output size, keeping the aspect ratio."""
    height, width = image.shape[:2]
    scale = MAX_OUTPUT_SIDE / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def png_base64(image: np.ndarray) -> str:
    """A BGR image as Base64 PNG, fitted to the output size (PaddleX's ``outputImage``)."""
    ok, encoded = cv2.imencode(".png", fit_output(image))
    return pybase64.b64encode(encoded.tobytes()).decode("ascii") if ok else ""


def crop_box(image: np.ndarray, box: list[float] | tuple[float, ...], pad: int = 0) -> np.ndarray:
    """The pixels of ``[x0, y0, x1, y1]`` (grown by ``pad``, clipped to the image, at least 1 px)."""
    height, width = image.shape[:2]
    x0, y0 = max(0, int(box[0]) - pad), max(0, int(box[1]) - pad)
    x1 = min(width, max(x0 + 1, int(np.ceil(box[2])) + pad))
    y1 = min(height, max(y0 + 1, int(np.ceil(box[3])) + pad))
    return image[y0:y1, x0:x1]


def rotate(image: np.ndarray, angle: int) -> np.ndarray:
    """Turn counter-clockwise by ``angle`` degrees onto a canvas that holds all of it.

    The affine warp about the centre that PaddleX uses (not a transpose),
    so the turned page is the one PaddleX's later stages see, pixel for pixel.
    """
    if angle % 360 == 0:
        return image
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_width, new_height = int(height * sin + width * cos), int(height * cos + width * sin)
    matrix[0, 2] += (new_width - width) / 2
    matrix[1, 2] += (new_height - height) / 2
    return cv2.warpAffine(image, matrix, (new_width, new_height), flags=cv2.INTER_CUBIC)
