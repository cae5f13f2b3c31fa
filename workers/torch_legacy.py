"""Read a legacy (pre-1.6, non-zip) PyTorch state dict with numpy alone.

The file is five pickles (magic number, protocol version, system info, the
state dict, the list of storage keys) followed by each storage's raw
little-endian bytes, each with an 8-byte element count in front. Tensors in
the state dict refer to storages by a persistent id.

Unpickling is restricted: only the handful of globals a state dict needs
resolve (the tensor rebuild function, storage types, OrderedDict); anything
else raises, so a malicious file cannot run code. PyTorch is not needed.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file asked for a global outside the state-dict allow-list."""


@dataclass
class _StorageRef:
    key: str
    dtype: type
    size: int


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    *_: Any,
) -> _TensorRef:
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, size = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError("persistent id does not name a storage type")
        return _StorageRef(str(key), storage_type.dtype, int(size))


def _load(stream: IO[bytes]) -> Any:
    return _RestrictedUnpickler(stream).load()


def load_state_dict(stream: IO[bytes]) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` from a legacy-format ``.pth`` stream."""
    if _load(stream) != MAGIC_NUMBER:
        raise ValueError("not a legacy PyTorch file (bad magic number)")
    if _load(stream) != PROTOCOL_VERSION:
        raise ValueError("unsupported legacy PyTorch protocol version")
    _load(stream)  # system info: endianness and type sizes
    state = _load(stream)
    keys = _load(stream)
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise ValueError("file does not hold a state dict")

    dtypes = {ref.storage.key: ref.storage.dtype for ref in state.values() if isinstance(ref, _TensorRef)}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        (count,) = struct.unpack("<q", stream.read(8))
        dtype = np.dtype(dtypes[key]).newbyteorder("<")
        raw = stream.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise ValueError(f"storage {key} is truncated")
        storages[key] = np.frombuffer(raw, dtype=dtype)

    result: dict[str, np.ndarray] = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise ValueError(f"entry {name} is not a tensor")
        flat = storages[ref.storage.key]
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset :],
            shape=ref.shape,
            strides=tuple(s * itemsize for s in ref.stride),
            writeable=False,
        )
        result[name] = np.array(view)  # own the memory, contiguous
    return result
