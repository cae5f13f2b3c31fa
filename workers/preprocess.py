"""Image decoding and the preprocessing ops of a PaddleX ``inference.yml``.

Supported ops, with PaddleX's semantics: ``ResizeImage`` (``resize_short``
or ``size``, optional ``interpolation``), ``CropImage`` (centre crop),
``NormalizeImage`` (``scale``/``mean``/``std``/``order``) and
``ToCHWImage``. Images are decoded to RGB, as PaddleX's classification
predictor reads them, with EXIF orientation applied.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Op = Callable[[Any], Any]


class PreprocessError(ValueError):
    """The inference.yml asks for an op or setting we do not support."""


class ImageDecodeError(ValueError):
    """The bytes are not an image we can read; message is shown to the client."""


_INTERPOLATION = {
    "NEAREST": Image.Resampling.NEAREST,
    "LINEAR": Image.Resampling.BILINEAR,
    "BILINEAR": Image.Resampling.BILINEAR,
    "CUBIC": Image.Resampling.BICUBIC,
    "BICUBIC": Image.Resampling.BICUBIC,
    "AREA": Image.Resampling.BOX,
    "LANCZOS4": Image.Resampling.LANCZOS,
    "LANCZOS": Image.Resampling.LANCZOS,
}


SizeHint = Callable[[int, int], "tuple[int, int] | None"]


# Pillow's parsers also raise these on hostile files (hypothesis found a TIFF
# whose tile offset is a string: TypeError); left alone, one would fail the
# whole batch with a 500.
_HOSTILE_FILE_ERRORS = (TypeError, IndexError, KeyError, EOFError, struct.error)


def decode_image(data: bytes | memoryview, min_size: SizeHint | None = None) -> Image.Image:
    """Decode to an upright RGB image or raise ImageDecodeError.

    ``min_size(width, height)`` gives the smallest size the preprocessing
    needs; for JPEGs, libjpeg then decodes at 1/2, 1/4 or 1/8 scale (DCT
    scaling, Pillow's draft mode) as long as the result is at least that big.
    A 12-MP photo bound for 256 px decodes several times faster this way.
    """
    try:
        image = Image.open(io.BytesIO(data))
        if min_size is not None and image.format == "JPEG":
            needed = min_size(*image.size)
            if needed is not None:
                image.draft("RGB", needed)
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        image.load()
    except UnidentifiedImageError:
        raise ImageDecodeError("the data is not an image in a format this server reads") from None
    except (OSError, ValueError, SyntaxError, *_HOSTILE_FILE_ERRORS) as exc:
        raise ImageDecodeError(f"the image could not be decoded ({exc})") from None
    return image


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    width, height = (int(v) for v in size)
    return width, height


def _number(value: float | int | str) -> float:
    """Accept PaddleClas-style strings such as ``1./255.`` for scale."""
    if isinstance(value, str):
        numerator, _, denominator = value.partition("/")
        return float(numerator) / (float(denominator) if denominator else 1.0)
    return float(value)


class ResizeImage:
    def __init__(
        self,
        resize_short: int | None = None,
        size: int | Sequence[int] | None = None,
        interpolation: str | None = None,
        **_: Any,
    ) -> None:
        if (resize_short is None) == (size is None):
            raise PreprocessError("ResizeImage needs exactly one of resize_short or size")
        self.resize_short = resize_short
        self.size = None if size is None else _pair(size)
        key = (interpolation or "LINEAR").upper()
        if key not in _INTERPOLATION:
            raise PreprocessError(f"ResizeImage: unknown interpolation {interpolation!r}")
        self.resample = _INTERPOLATION[key]

    def target(self, width: int, height: int) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        scale = self.resize_short / min(width, height)  # type: ignore[operator]
        return max(1, round(width * scale)), max(1, round(height * scale))

    def __call__(self, image: Image.Image) -> Image.Image:
        target = self.target(*image.size)
        return image if target == image.size else image.resize(target, self.resample)

    def min_source_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The smallest decode that still only shrinks into this resize."""
        if self.size is not None:
            # EXIF may swap the axes after decoding: ask for the larger side on both.
            side = max(self.size)
            return (side, side) if min(width, height) > side else None
        short = self.resize_short  # type: ignore[assignment]
        if min(width, height) <= short:
            return None
        scale = short / min(width, height)
        return math.ceil(width * scale), math.ceil(height * scale)


class CropImage:
    """Centre crop; a smaller image is scaled up first so the crop fits."""

    def __init__(self, size: int | Sequence[int] = 224, **_: Any) -> None:
        self.width, self.height = _pair(size)

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width < self.width or height < self.height:
            scale = max(self.width / width, self.height / height)
            width, height = max(self.width, round(width * scale)), max(self.height, round(height * scale))
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        left = (width - self.width) // 2
        top = (height - self.height) // 2
        return image.crop((left, top, left + self.width, top + self.height))


class NormalizeImage:
    """(x * scale - mean) / std, fused into one multiply-add in float32."""

    def __init__(
        self,
        scale: float | str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        order: str = "",
        channel_num: int = 3,
        **_: Any,
    ) -> None:
        scale_v = _number(scale) if scale is not None else 1.0 / 255.0
        mean_v = np.asarray(mean if mean is not None else [0.485, 0.456, 0.406], np.float32)
        std_v = np.asarray(std if std is not None else [0.229, 0.224, 0.225], np.float32)
        if channel_num != 3 or mean_v.shape != (3,) or std_v.shape != (3,):
            raise PreprocessError("NormalizeImage supports 3 channels only")
        # order "chw" means the input is already CHW (ToCHWImage ran before).
        shape = (3, 1, 1) if order.lower() == "chw" else (1, 1, 3)
        self.multiplier = (scale_v / std_v).astype(np.float32).reshape(shape)
        self.offset = (mean_v / std_v).astype(np.float32).reshape(shape)

    def __call__(self, image: Image.Image | np.ndarray) -> np.ndarray:
        return np.asarray(image, dtype=np.float32) * self.multiplier - self.offset


class ToCHWImage:
    def __init__(self, **_: Any) -> None:
        pass

    def __call__(self, array: Image.Image | np.ndarray) -> np.ndarray:
        return np.asarray(array, dtype=np.float32).transpose(2, 0, 1)


_OPS: dict[str, type] = {
    "ResizeImage": ResizeImage,
    "CropImage": CropImage,
    "NormalizeImage": NormalizeImage,
    "ToCHWImage": ToCHWImage,
}
# Ops PaddleX lists that are no-ops for us: decoding happens before the chain.
_IGNORED = {"DecodeImage"}


class Preprocessor:
    """The op chain of one model, turning an RGB image into a CHW float32 array."""

    def __init__(self, transform_ops: list[dict[str, Any]]) -> None:
        self.ops: list[Op] = []
        for entry in transform_ops:
            if not isinstance(entry, dict) or len(entry) != 1:
                raise PreprocessError(f"transform op must be a one-key mapping, got {entry!r}")
            ((name, params),) = entry.items()
            if name in _IGNORED:
                continue
            if name not in _OPS:
                raise PreprocessError(f"unsupported preprocessing op {name!r}")
            self.ops.append(_OPS[name](**(params or {})))
        if not any(isinstance(op, ToCHWImage) for op in self.ops):
            self.ops.append(ToCHWImage())  # the network always takes CHW

    def min_source_size(self, width: int, height: int) -> tuple[int, int] | None:
        """What :func:`decode_image` may shrink to: only when a resize comes first."""
        first = self.ops[0] if self.ops else None
        return first.min_source_size(width, height) if isinstance(first, ResizeImage) else None

    def __call__(self, image: Image.Image) -> np.ndarray:
        value: Any = image
        for op in self.ops:
            value = op(value)
        return np.ascontiguousarray(value, dtype=np.float32)
