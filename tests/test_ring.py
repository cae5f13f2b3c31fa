"""The ring protocol and the message framing that rides on it."""

from __future__ import annotations

import os
import random
import uuid
from collections import deque

import multiprocess
import pytest

from pxserve.shared.messages import Outcome, Task
from pxserve.shared.ring import Doorbell, RecordTooLargeError, Ring, RingFullError


@pytest.fixture
def ring():
    created = Ring.create(f"pxserve-test-{uuid.uuid4().hex}", 4096)
    yield created
    created.unlink()
    created.close()


def test_records_come_out_in_order_and_intact(ring: Ring) -> None:
    ring.put([b"hello"])
    ring.put([b"a", b"bc", memoryview(b"def")])
    assert ring.get() == b"hello"
    assert ring.get() == b"abcdef"
    assert ring.get() is None


def test_full_ring_refuses_then_accepts_after_a_read(ring: Ring) -> None:
    payload = b"x" * 1000
    written = 0
    with pytest.raises(RingFullError):
        while True:
            ring.put([payload])
            written += 1
    assert written == 4  # 4 x 1008 bytes fit in 4096
    assert ring.get() == payload
    ring.put([payload])  # room again


def test_a_record_that_can_never_fit_is_rejected(ring: Ring) -> None:
    with pytest.raises(RecordTooLargeError):
        ring.put([b"x" * ring.capacity])


def test_wraparound_matches_a_reference_queue(ring: Ring) -> None:
    """Random sizes and interleavings: the ring behaves like a FIFO queue."""
    rng = random.Random(1234)
    model: deque[bytes] = deque()
    for step in range(5000):
        if rng.random() < 0.55:
            record = os.urandom(rng.randint(0, 700))
            try:
                ring.put([record[:3], record[3:]])
                model.append(record)
            except RingFullError:
                assert model, "an empty ring must accept any record within max_payload"
        else:
            assert ring.get() == (model.popleft() if model else None), f"step {step}"
    while model:
        assert ring.get() == model.popleft()
    assert ring.get() is None and ring.used() == 0


def _echo_consumer(name: str, bell: Doorbell, count: int, queue) -> None:
    ring = Ring.attach(name)
    seen = []
    import select

    while len(seen) < count:
        select.select([bell.read_fd], [], [], 5)
        bell.drain()
        while (record := ring.get()) is not None:
            seen.append(Task.parse(record).request_id)
    queue.put(seen)
    ring.close()


def test_another_process_reads_what_this_one_writes() -> None:
    ring = Ring.create(f"pxserve-test-{uuid.uuid4().hex}", 1 << 16)
    bell = Doorbell.create()
    ctx = multiprocess.get_context("spawn")
    queue = ctx.Queue()
    consumer = ctx.Process(target=_echo_consumer, args=(ring.path.name, bell.reader(), 500, queue))
    consumer.start()
    try:
        sent = 0
        while sent < 500:
            try:
                ring.put(Task(sent, {"topk": 1}, os.urandom(300)).frame())
                sent += 1
                bell.ring()
            except RingFullError:
                pass
        assert queue.get(timeout=60) == list(range(500))
    finally:
        consumer.join(timeout=10)
        ring.unlink()
        ring.close()
        bell.close()
    assert consumer.exitcode == 0


def test_doorbell_reports_when_the_writer_is_gone() -> None:
    bell = Doorbell.create()
    bell.ring()
    assert bell.drain() is True
    bell.close_writer()
    assert bell.drain() is False
    bell.close()


def _hold_until_killed(bell: Doorbell) -> None:
    import time

    time.sleep(120)  # killed by the test long before this


def test_ringing_a_reader_that_was_killed_reports_it_instead_of_raising() -> None:
    """A worker SIGKILLed under load is not reaped at once; a request sent to
    it in that moment must be retried, not answered 500 (BrokenPipeError)."""
    import signal

    bell = Doorbell.create()
    ctx = multiprocess.get_context("spawn")
    reader = ctx.Process(target=_hold_until_killed, args=(bell.reader(),))
    reader.start()
    bell.close_reader()  # as the supervisor does: only the worker holds the read end
    try:
        assert bell.ring() is True
        os.kill(reader.pid, signal.SIGKILL)
        reader.join(timeout=30)
        assert reader.exitcode == -signal.SIGKILL
        assert bell.ring() is False
        assert bell.ring() is False  # and again: nothing raises, nothing blocks
    finally:
        bell.close()


def test_task_and_outcome_round_trip() -> None:
    task = Task(2**40, {"topk": 3, "visualize": True}, b"\xff\xd8image")
    parsed = Task.parse(b"".join(task.frame()))
    assert (parsed.request_id, parsed.params, bytes(parsed.image)) == (2**40, task.params, b"\xff\xd8image")
    ok = Outcome.success(7, {"categories": [{"id": 1, "name": "x", "score": 0.5}], "image": None})
    assert Outcome.parse(b"".join(ok.frame())) == ok and ok.ok
    bad = Outcome.failure(8, 422, "image: nope")
    assert Outcome.parse(b"".join(bad.frame())).message == "image: nope"


def test_a_fan_out_round_trips_and_children_can_take_the_parents_payload() -> None:
    from pxserve.shared.messages import FAN_OUT, PARENT_PAYLOAD, FanOut, Outcome

    plan = FanOut(
        [Task(0, {"page": 0}, PARENT_PAYLOAD, "page"), Task(0, {"ids": [1, 2]}, b"\x00crops", "lines")],
        Task(0, {"data_info": {"numPages": 2}}, b"", "document"),
    )
    outcome = Outcome.parse(b"".join(Outcome.fan_out(7, plan).frame()))
    assert (outcome.request_id, outcome.status) == (7, FAN_OUT)
    decoded = FanOut.decode(outcome.body)
    assert [c.stage for c in decoded.children] == ["page", "lines"]
    assert decoded.children[0].image is PARENT_PAYLOAD
    parent = Task(7, {}, b"%PDF-1.4 the file", "pdf", pipeline="OCR")
    first, second = (child.child_of(parent) for child in decoded.children)
    assert first.image == b"%PDF-1.4 the file"
    assert bytes(second.image) == b"\x00crops"
    assert first.pipeline == second.pipeline == "OCR"  # children run in their parent's pipeline
    assert Task.parse(b"".join(first.frame())).pipeline == "OCR"
    assert decoded.then.params == {"data_info": {"numPages": 2}}
    joined = decoded.then.with_children([b'{"a":1}', b"[2]"])
    assert Task.parse(b"".join(joined.frame())).params["children"] == [{"a": 1}, [2]]


def test_a_documents_pages_and_a_streamed_task_round_trip() -> None:
    from pxserve.shared.messages import DocumentPages, FanOut

    streamed = Task(3, {}, b"%PDF", "pdf", pipeline="OCR").in_pipeline("OCR", streamed=True)
    parsed = Task.parse(b"".join(streamed.with_id(9, solo=True).frame()))
    assert (parsed.request_id, parsed.streamed, parsed.solo) == (9, True, True)
    assert not Task.parse(b"".join(Task(1, {}, b"").frame())).streamed
    info = {"numPages": 2, "pages": [{"width": 10, "height": 20}] * 2, "type": "pdf"}
    plan = FanOut([Task(0, {"page": 0}, b"", "page")], Task(0, {}, b"", "document"), DocumentPages(info, 5))
    decoded = FanOut.decode(plan.encode())
    assert decoded.pages == DocumentPages(info, 5) and (decoded.pages.read, decoded.pages.dropped) == (2, 3)
    assert FanOut.decode(FanOut(plan.children, plan.then).encode()).pages is None
    assert not decoded.children[0].child_of(streamed).streamed  # pages are ordinary tasks


def test_a_task_too_large_for_a_ring_is_named_for_what_it_carries() -> None:
    from pxserve.frontend.engine_client import EngineClient

    upload = Task(1, {"topk": 1}, b"x" * 3 * 2**20)
    assert EngineClient._too_large(upload).startswith("the file (3.0 MiB")
    joined = Task(1, {}, b"", "document").with_children([b"{}"] * 300)
    message = EngineClient._too_large(joined)
    assert "300 parts" in message and "Accept: application/x-ndjson" in message
