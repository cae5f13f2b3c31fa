"""glibc's allocator, told to give memory back: used by workers.

glibc raises its mmap threshold to the largest block freed so far (up to
32 MiB), after which buffers of that size come from the heap, whose
high-water mark only grows and fragments. A page's tensors in a Paddle
worker (23 MB for a 1248x1600 page as float32) then stay resident after
they are freed. A fixed threshold of 1 MiB gives each such buffer back to
the OS as soon as it is freed, and trimming the heap once a worker has
waited for work a moment returns its free pages too. Elsewhere than glibc
these are no-ops: that allocator has its own policy.

The threshold has a price: each large buffer is page-faulted in again on
every use. Workers that run only ONNX Runtime, whose arena keeps its own
memory, leave glibc's default (workers/worker.py), and so does the front:
there it cost a 12-MP photo's classification 8% at concurrency 8, for
request bodies whose freed memory the next requests reuse.
"""

from __future__ import annotations

import ctypes
from typing import Any

M_MMAP_THRESHOLD = -3  # mallopt parameter
MMAP_THRESHOLD = 1 << 20


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def return_large_buffers_to_the_os() -> None:
    """Serve allocations of 1 MiB and more from mmap, always (call once, early)."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def return_free_heap() -> None:
    """Hand the heap's free pages back to the OS (a few milliseconds)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
