"""Where pxserve keeps what it builds once: embedded models, ONNX conversions.

``$PXSERVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pxserve``, else
``~/.cache/pxserve``. Entries are written to a temporary sibling and renamed
into place, so a half-written entry is never seen.
"""

from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path

from pxserve.shared.model_dir import ModelDir

ONNX_OPSET = 13
# Bump when the conversion itself changes, so old conversions are not reused.
ONNX_CONVERSION_VERSION = 2


def cache_root() -> Path:
    explicit = os.environ.get("PXSERVE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "pxserve"


def _paddle2onnx_version() -> str:
    try:
        return metadata.version("paddle2onnx")
    except metadata.PackageNotFoundError:
        return "none"


def onnx_model_path(model: ModelDir) -> Path:
    """The cached ONNX file for a model, keyed by a hash of its files."""
    digest = hashlib.sha256()
    digest.update(f"v{ONNX_CONVERSION_VERSION} opset{ONNX_OPSET} p2o{_paddle2onnx_version()}".encode())
    for path in (model.program, model.params):
        digest.update(path.name.encode())
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.model_name)
    return cache_root() / "onnx" / f"{safe_name}-{digest.hexdigest()[:16]}" / "inference.onnx"
