"""The message contract between the front and the workers.

Exactly two messages cross the process boundary through the rings, and
both are framed here so neither side invents its own encoding:

* :class:`Task` (front -> worker): a request id, small JSON parameters, and
  the encoded image bytes, which are copied into the ring as they are.
* :class:`Outcome` (worker -> front): the same id, an HTTP-style status and a
  body. With status 200 the body is the JSON ``result`` object; otherwise it
  is a UTF-8 error message for the envelope's ``errorMsg``.

Control messages that are not per request (a worker is ready, a worker
failed to start) travel on the worker's status pipe as :class:`WorkerEvent`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

# request_id u64, params length u32, payload length u32
_TASK_HEADER = struct.Struct("<QII")
# request_id u64, status u16, reserved u16, body length u32
_OUTCOME_HEADER = struct.Struct("<QHHI")


@dataclass(frozen=True, slots=True)
class Task:
    request_id: int
    params: dict[str, Any]
    image: bytes | memoryview

    def frame(self) -> tuple[bytes, bytes, bytes | memoryview]:
        """The parts of one ring record, without joining the image bytes."""
        params = orjson.dumps(self.params)
        header = _TASK_HEADER.pack(self.request_id, len(params), len(self.image))
        return header, params, self.image

    @classmethod
    def parse(cls, record: bytes) -> Task:
        request_id, params_len, image_len = _TASK_HEADER.unpack_from(record, 0)
        start = _TASK_HEADER.size
        params = orjson.loads(record[start : start + params_len])
        image_start = start + params_len
        image = memoryview(record)[image_start : image_start + image_len]
        return cls(request_id, params, image)


@dataclass(frozen=True, slots=True)
class Outcome:
    request_id: int
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status == 200

    @classmethod
    def success(cls, request_id: int, result: dict[str, Any]) -> Outcome:
        return cls(request_id, 200, orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY))

    @classmethod
    def failure(cls, request_id: int, status: int, message: str) -> Outcome:
        return cls(request_id, status, message.encode("utf-8", "replace"))

    def frame(self) -> tuple[bytes, bytes]:
        return _OUTCOME_HEADER.pack(self.request_id, self.status, 0, len(self.body)), self.body

    @classmethod
    def parse(cls, record: bytes) -> Outcome:
        request_id, status, _, body_len = _OUTCOME_HEADER.unpack_from(record, 0)
        start = _OUTCOME_HEADER.size
        return cls(request_id, status, record[start : start + body_len])

    @property
    def message(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """A worker's lifecycle report on its status pipe (pickled; tiny)."""

    kind: str  # "ready" | "failed" | "batch"
    worker: int
    detail: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
