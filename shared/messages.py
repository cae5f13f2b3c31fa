"""The message contract between the front and the workers.

Exactly two messages cross the process boundary through the rings, and
both are framed here so neither side invents its own encoding:

* :class:`Task` (front -> worker): a request id, the served pipeline it
  belongs to (one server serves several), the stage to run (empty for a
  pipeline's first stage; ``"<sub-pipeline>/<stage>"`` for a sub-pipeline's,
  see shared/stages.py), small JSON parameters, and a payload (the encoded
  file's bytes), copied into the ring as it is.
* :class:`Outcome` (worker -> front): the same id, an HTTP-style status and a
  body. With status 200 the body is the JSON ``result`` object; otherwise it
  is a UTF-8 error message for the envelope's ``errorMsg``.

A stage may answer with a :class:`FanOut` instead of a result (status
``FAN_OUT``): child tasks that can run on any worker, and the task that
continues once all of them have answered, with their results in its
``params["children"]``. The front's engine client runs them, in the pipeline
of the task that fanned out; this is how one request's pages or text lines
spread over every worker.

An outcome larger than what one ring record can carry travels as several
records: ``PARTIAL`` pieces, then the last piece with the real status
(:meth:`Outcome.pieces`); the front joins them. So a big answer (a long PDF
with pictures) is never refused for the ring's size, only for
``Serving.max_result_mb``.

Control messages that are not per request (a worker is ready, a worker
failed to start) travel on the worker's status pipe as :class:`WorkerEvent`.
Cancellation travels on neither: see shared/task_boards.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

# request_id u64, flags u16, pipeline length u16, stage length u16, params length u32, payload length u32
_TASK_HEADER = struct.Struct("<QHHHII")
_SOLO = 0x1
_STREAMED = 0x2
_BACKGROUND = 0x4
_LENGTH = struct.Struct("<I")
# Outcome statuses that are not HTTP statuses; they never reach a client.
FAN_OUT = 1  # the body is a FanOut
PARTIAL = 2  # the body is one piece of a larger body; more records follow
# A task the worker skipped because its request was abandoned (nginx's
# "client closed request"); the front has stopped waiting for it already.
DROPPED = 499


class _ParentPayload(bytes):
    """The type of :data:`PARENT_PAYLOAD`."""


# A fan-out task whose payload is this runs on the payload of the task that
# fanned out (a PDF's pages on the PDF): the front fills it in, so the file
# never travels back through the response ring.
PARENT_PAYLOAD = _ParentPayload()
# request_id u64, status u16, reserved u16, body length u32
_OUTCOME_HEADER = struct.Struct("<QHHI")


@dataclass(frozen=True, slots=True)
class Task:
    request_id: int
    params: dict[str, Any]
    image: bytes | memoryview  # the payload: an encoded image, a PDF, or stage data
    stage: str = ""
    # Run in a batch of its own: set on a retry after a worker crashed, so a
    # second crash blames this task and not whatever it was batched with.
    solo: bool = False
    pipeline: str = ""  # the served pipeline's name (the engine sets it)
    # Its client takes a document's pages one by one as they finish (an
    # ``application/x-ndjson`` answer): a PDF stage reads up to
    # ``Serving.max_stream_pages`` and leaves each page's checks to that page.
    streamed: bool = False
    # Work no client is waiting on at the door (a job's pages): the front sends it only while no
    # request's task waits, and a worker takes a request's task before it (workers/task_queues.py).
    background: bool = False

    def frame(self) -> tuple[bytes, bytes, bytes | memoryview]:
        """The parts of one ring record, without joining the payload bytes."""
        pipeline, stage = self.pipeline.encode(), self.stage.encode()
        # Keys that are not strings (a per-class setting's class ids) travel as strings; the
        # stage's pydantic model reads them back as what they were.
        params = orjson.dumps(self.params, option=orjson.OPT_NON_STR_KEYS)
        flags = (_SOLO if self.solo else 0) | (_STREAMED if self.streamed else 0)
        flags |= _BACKGROUND if self.background else 0
        header = _TASK_HEADER.pack(
            self.request_id, flags, len(pipeline), len(stage), len(params), len(self.image)
        )
        return header + pipeline + stage, params, self.image

    @classmethod
    def parse(cls, record: bytes | memoryview) -> Task:
        request_id, flags, pipeline_len, stage_len, params_len, image_len = _TASK_HEADER.unpack_from(
            record, 0
        )
        start = _TASK_HEADER.size
        pipeline = bytes(record[start : start + pipeline_len]).decode()
        start += pipeline_len
        stage = bytes(record[start : start + stage_len]).decode()
        start += stage_len
        params = orjson.loads(record[start : start + params_len])
        image_start = start + params_len
        image = memoryview(record)[image_start : image_start + image_len]
        return cls(
            request_id, params, image, stage, bool(flags & _SOLO), pipeline, bool(flags & _STREAMED),
            bool(flags & _BACKGROUND),
        )  # fmt: skip

    def with_id(self, request_id: int, solo: bool = False) -> Task:
        return replace(self, request_id=request_id, solo=solo)

    def in_pipeline(self, pipeline: str, streamed: bool = False, background: bool = False) -> Task:
        return replace(self, pipeline=pipeline, streamed=streamed, background=background)

    def child_of(self, parent: Task) -> Task:
        """This fan-out task, run in its parent's pipeline, on its parent's payload if it asked for it."""
        payload = parent.image if self.image is PARENT_PAYLOAD else self.image
        return Task(
            self.request_id,
            self.params,
            payload,
            self.stage,
            False,
            parent.pipeline,
            background=parent.background,
        )

    def with_children(self, results: list[bytes]) -> Task:
        """This continuation with its children's JSON results (not re-encoded)."""
        params = {**self.params, "children": [orjson.Fragment(r) for r in results]}
        return Task(
            self.request_id, params, self.image, self.stage, False, self.pipeline, background=self.background
        )


@dataclass(frozen=True, slots=True)
class DocumentPages:
    """Marks a fan-out whose children are a document's pages, in page order, and whose
    continuation only lists their results beside ``data_info``.

    So the front may send a streamed request each page's result as it
    finishes instead of running the continuation, and can tell any client
    how many of the file's pages were left unread.
    """

    data_info: dict[str, Any]  # PaddleX's dataInfo for the pages read
    in_file: int  # pages the file has: more than the children when some were dropped

    @property
    def read(self) -> int:
        return int(self.data_info.get("numPages", self.in_file))

    @property
    def dropped(self) -> int:
        return self.in_file - self.read


@dataclass(frozen=True, slots=True)
class FanOut:
    """Children to run anywhere, then ``then`` with their results."""

    children: list[Task]
    then: Task
    pages: DocumentPages | None = None

    def encode(self) -> bytes:
        parts = [_LENGTH.pack(len(self.children))]
        for task in [*self.children, self.then]:
            record = b"".join(task.frame())
            parts += [_LENGTH.pack(len(record)), b"\x01" if task.image is PARENT_PAYLOAD else b"\x00", record]
        pages = b"" if self.pages is None else orjson.dumps([self.pages.data_info, self.pages.in_file])
        return b"".join([*parts, _LENGTH.pack(len(pages)), pages])

    @classmethod
    def decode(cls, body: bytes) -> FanOut:
        view = memoryview(body)
        (count,) = _LENGTH.unpack_from(view, 0)
        offset = _LENGTH.size
        tasks = []
        for _ in range(count + 1):
            (length,) = _LENGTH.unpack_from(view, offset)
            inherits = view[offset + _LENGTH.size] == 1
            offset += _LENGTH.size + 1
            task = Task.parse(bytes(view[offset : offset + length]))
            if inherits:
                task = Task(task.request_id, task.params, PARENT_PAYLOAD, task.stage, False, task.pipeline)
            tasks.append(task)
            offset += length
        (length,) = _LENGTH.unpack_from(view, offset)
        pages = None
        if length:
            data_info, in_file = orjson.loads(view[offset + _LENGTH.size : offset + _LENGTH.size + length])
            pages = DocumentPages(data_info, in_file)
        return cls(tasks[:-1], tasks[-1], pages)


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
    def fan_out(cls, request_id: int, plan: FanOut) -> Outcome:
        return cls(request_id, FAN_OUT, plan.encode())

    @classmethod
    def failure(cls, request_id: int, status: int, message: str) -> Outcome:
        return cls(request_id, status, message.encode("utf-8", "replace"))

    @classmethod
    def dropped(cls, request_id: int) -> Outcome:
        return cls.failure(request_id, DROPPED, "abandoned by its client before it ran")

    def frame(self) -> tuple[bytes, bytes | memoryview]:
        return _OUTCOME_HEADER.pack(self.request_id, self.status, 0, len(self.body)), self.body

    def pieces(self, max_record: int) -> list[tuple[bytes, bytes | memoryview]]:
        """Ring records of at most ``max_record`` bytes: PARTIAL pieces, then the last."""
        room = max_record - _OUTCOME_HEADER.size
        body = memoryview(self.body)
        full = (len(body) - 1) // room if body else 0  # pieces before the last, which may be short
        records = [
            (_OUTCOME_HEADER.pack(self.request_id, PARTIAL, 0, room), body[i * room : (i + 1) * room])
            for i in range(full)
        ]
        records.append(Outcome(self.request_id, self.status, body[full * room :]).frame())  # type: ignore[arg-type]
        return records

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
