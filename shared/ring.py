"""Single-producer, single-consumer byte rings in shared memory.

Each worker owns two rings: requests (front -> worker) and responses
(worker -> front). One process writes a ring and exactly one other reads it,
so the only shared state is two monotonically growing byte counters in the
ring's header, each written by one side. No locks are needed.

Layout of a segment::

    [ header: 64 bytes ][ data: capacity bytes ]

    header: magic u32, version u32, capacity u64, write_pos u64, read_pos u64

A record is ``[length u32][reserved u32][payload][padding to 8 bytes]``.
When a record does not fit before the end of the data area, the writer leaves
a wrap marker (length 0xFFFFFFFF) and continues at offset 0.

Waking the other side is not the ring's job: see :class:`Doorbell`. The
writer publishes a record by storing ``write_pos`` after the payload; the
doorbell's system call that follows is a full memory barrier, and on x86
stores are not reordered with stores, so a reader never sees a position that
runs ahead of its bytes.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

MAGIC = 0x50585247  # "PXRG"
VERSION = 1
HEADER_SIZE = 64
RECORD_HEADER = struct.Struct("<II")
WRAP = 0xFFFFFFFF
ALIGN = 8

_HEADER = struct.Struct("<IIQ")  # magic, version, capacity
_WRITE_POS = 16
_READ_POS = 24
_POS = struct.Struct("<Q")

Buffer = bytes | bytearray | memoryview


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def shm_dir() -> Path:
    """Where ring files live: /dev/shm on Linux, else a temporary directory."""
    dev_shm = Path("/dev/shm")
    return dev_shm if dev_shm.is_dir() else Path(tempfile.gettempdir())


class RingFullError(Exception):
    """The record does not fit in the ring right now; try again later."""


class RecordTooLargeError(ValueError):
    """The record can never fit in this ring, whatever the reader does."""


class Ring:
    """One SPSC ring mapped into this process.

    The creating side calls :meth:`create`, the other :meth:`attach`; the
    creator unlinks the file once both have mapped it, so a crash leaves
    nothing behind in /dev/shm.
    """

    def __init__(self, path: Path, mm: mmap.mmap) -> None:
        self.path = path
        self._mm = mm
        self._buf = memoryview(mm)
        magic, version, capacity = _HEADER.unpack_from(self._buf, 0)
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"{path} is not a pxserve ring (v{VERSION})")
        self.capacity: int = capacity
        self._data = self._buf[HEADER_SIZE : HEADER_SIZE + capacity]

    @classmethod
    def create(cls, name: str, capacity: int) -> Ring:
        capacity = _align(capacity)
        path = shm_dir() / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, HEADER_SIZE + capacity)
            mm = mmap.mmap(fd, HEADER_SIZE + capacity)
        finally:
            os.close(fd)
        _HEADER.pack_into(mm, 0, MAGIC, VERSION, capacity)
        _POS.pack_into(mm, _WRITE_POS, 0)
        _POS.pack_into(mm, _READ_POS, 0)
        return cls(path, mm)

    @classmethod
    def attach(cls, name: str) -> Ring:
        path = shm_dir() / name
        fd = os.open(path, os.O_RDWR)
        try:
            mm = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        return cls(path, mm)

    def unlink(self) -> None:
        """Remove the name; the mapping lives on until both sides close."""
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        self._data.release()
        self._buf.release()
        self._mm.close()

    # -- positions ---------------------------------------------------------
    @property
    def _write_pos(self) -> int:
        return _POS.unpack_from(self._buf, _WRITE_POS)[0]

    @property
    def _read_pos(self) -> int:
        return _POS.unpack_from(self._buf, _READ_POS)[0]

    def used(self) -> int:
        """Bytes written and not yet consumed (including padding)."""
        return self._write_pos - self._read_pos

    def max_payload(self) -> int:
        """The largest payload a record can ever carry in this ring."""
        return self.capacity // 2 - RECORD_HEADER.size

    # -- producer ----------------------------------------------------------
    def put(self, parts: Sequence[Buffer]) -> None:
        """Append one record made of ``parts``; raise RingFullError if no room."""
        length = sum(len(p) for p in parts)
        if length > self.max_payload():
            raise RecordTooLargeError(
                f"record of {length} bytes exceeds the ring's limit of {self.max_payload()}"
            )
        size = _align(RECORD_HEADER.size + length)
        write_pos = self._write_pos
        free = self.capacity - (write_pos - self._read_pos)
        offset = write_pos % self.capacity
        tail = self.capacity - offset
        need = size if size <= tail else tail + size
        if need > free:
            raise RingFullError
        if size > tail:  # leave a wrap marker, continue at the start
            RECORD_HEADER.pack_into(self._data, offset, WRAP, 0)
            write_pos += tail
            offset = 0
        RECORD_HEADER.pack_into(self._data, offset, length, 0)
        cursor = offset + RECORD_HEADER.size
        for part in parts:
            n = len(part)
            self._data[cursor : cursor + n] = part
            cursor += n
        _POS.pack_into(self._buf, _WRITE_POS, write_pos + size)

    # -- consumer ----------------------------------------------------------
    def get(self) -> bytes | None:
        """Pop the oldest record as bytes, or return None when empty."""
        read_pos = self._read_pos
        if read_pos == self._write_pos:
            return None
        offset = read_pos % self.capacity
        length, _ = RECORD_HEADER.unpack_from(self._data, offset)
        if length == WRAP:
            read_pos += self.capacity - offset
            offset = 0
            length, _ = RECORD_HEADER.unpack_from(self._data, 0)
        start = offset + RECORD_HEADER.size
        record = bytes(self._data[start : start + length])
        _POS.pack_into(self._buf, _READ_POS, read_pos + _align(RECORD_HEADER.size + length))
        return record


class Doorbell:
    """A non-blocking pipe used only to wake the reader of a ring.

    One byte is written per wake-up; a full pipe already means "wake up", so
    the writer never blocks. The reader drains all pending bytes at once.
    Image bytes never travel here. When every write end is closed (the other
    process died), :meth:`drain` reports it, which is how a worker notices
    that the front has gone.

    Each process keeps only the end it uses: :meth:`reader` and
    :meth:`writer` give one-ended copies that can be passed to a spawned
    child (the descriptor is duplicated into it by multiprocess).
    """

    def __init__(self, read_fd: int = -1, write_fd: int = -1) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd

    @classmethod
    def create(cls) -> Doorbell:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        return cls(read_fd, write_fd)

    def reader(self) -> Doorbell:
        return Doorbell(read_fd=self.read_fd)

    def writer(self) -> Doorbell:
        return Doorbell(write_fd=self.write_fd)

    def ring(self) -> bool:
        """Wake the reader; False if it has gone (its process died).

        A reader that has just died is noticed by its owner's supervisor a
        moment later; until then, ringing it must not raise, or a request
        sent in that moment fails instead of being retried elsewhere.
        """
        try:
            os.write(self.write_fd, b"\x01")
        except BlockingIOError:  # a full pipe already means "wake up"
            pass
        except BrokenPipeError:
            return False
        return True

    def drain(self) -> bool:
        """Consume pending wake-ups; return False once the writer is gone."""
        try:
            while True:
                chunk = os.read(self.read_fd, 4096)
                if not chunk:
                    return False
        except BlockingIOError:
            return True

    def close_reader(self) -> None:
        self.read_fd = _close(self.read_fd)

    def close_writer(self) -> None:
        self.write_fd = _close(self.write_fd)

    def close(self) -> None:
        self.close_reader()
        self.close_writer()

    def __reduce__(self) -> tuple:
        from multiprocess.reduction import DupFd

        def dup(fd: int) -> object:
            return DupFd(fd) if fd >= 0 else None

        return (_rebuild_doorbell, (dup(self.read_fd), dup(self.write_fd)))


def _close(fd: int) -> int:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
    return -1


def _rebuild_doorbell(read_dup: object, write_dup: object) -> Doorbell:
    def detach(dup: object) -> int:
        return dup.detach() if dup is not None else -1  # type: ignore[attr-defined]

    return Doorbell(detach(read_dup), detach(write_dup))
