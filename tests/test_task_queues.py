"""A worker's queues: pipelines take turns, and a solo task runs alone."""

from __future__ import annotations

from pxserve.shared.messages import Task
from pxserve.workers.task_queues import TaskQueues


def task(pipeline: str, request_id: int, solo: bool = False) -> Task:
    return Task(request_id, {}, b"", "", solo, pipeline)


def test_pipelines_take_turns_whatever_arrived_first() -> None:
    queues = TaskQueues(["OCR", "image_classification"])
    for i in range(1, 21):
        queues.add(task("OCR", i))  # a flood on OCR, queued first
    queues.add(task("image_classification", 100))
    order = []
    while len(queues):
        pipeline = queues.next_pipeline()
        assert pipeline is not None
        order.append((pipeline, [t.request_id for t in queues.take(pipeline, 8)]))
    assert order[0] == ("OCR", list(range(1, 9)))
    assert order[1] == ("image_classification", [100])  # next, not after the 20 OCR tasks
    assert [p for p, _ in order[2:]] == ["OCR", "OCR"]


def test_another_pipeline_is_found_besides_the_running_one() -> None:
    queues = TaskQueues(["OCR", "image_classification"])
    queues.add(task("OCR", 1))
    assert queues.next_pipeline(besides="OCR") is None
    queues.add(task("image_classification", 2))
    assert queues.next_pipeline(besides="OCR") == "image_classification"


def test_a_solo_task_is_a_batch_of_its_own_and_unknown_pipelines_are_refused() -> None:
    queues = TaskQueues(["OCR"])
    for t in (task("OCR", 1), task("OCR", 2, solo=True), task("OCR", 3)):
        queues.add(t)
    assert [t.request_id for t in queues.take("OCR", 8)] == [1]
    assert queues.head_is_solo("OCR")
    assert [t.request_id for t in queues.take("OCR", 8)] == [2]
    assert [t.request_id for t in queues.take("OCR", 8)] == [3]
    assert not queues.add(task("table_recognition", 4))


def test_the_queues_stop_reading_once_they_hold_a_rings_worth_of_bytes() -> None:
    queues = TaskQueues(["OCR"], max_bytes=100)
    queues.add(Task(1, {}, b"x" * 60, "page", False, "OCR"))
    assert queues.has_room
    queues.add(Task(2, {}, b"x" * 60, "page", False, "OCR"))
    assert not queues.has_room and queues.bytes == 120
    queues.take("OCR", 1)
    assert queues.has_room and queues.bytes == 60
