"""The pieces of the front/worker contract that bound memory and drop work, one by one."""

from __future__ import annotations

import asyncio

import multiprocess
import pytest

from pxserve.frontend.engine_client import EngineClient
from pxserve.frontend.placement import worker_memory_limit
from pxserve.shared.config import MiB, ServingSettings
from pxserve.shared.messages import PARTIAL, Outcome, Task
from pxserve.shared.ring import Ring
from pxserve.shared.task_boards import BOARD_SLOTS, CancelBoard, InHandBoard
from pxserve.workers.ocr.detection import batch_for_detection


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 250, 1000])
def test_an_outcome_of_any_size_travels_in_pieces_and_joins_back(size: int) -> None:
    outcome = Outcome(7, 200, bytes(range(256)) * (size // 256) + bytes(size % 256))
    records = outcome.pieces(max_record=100 + 16)  # 100 bytes of body per record
    assert all(len(head) + len(body) <= 116 for head, body in records)
    parsed = [Outcome.parse(head + bytes(body)) for head, body in records]
    assert [p.status for p in parsed] == [PARTIAL] * (len(parsed) - 1) + [200]
    assert b"".join(p.body for p in parsed) == outcome.body
    assert len(parsed) == max(1, -(-size // 100))


def test_a_solo_task_keeps_its_flag_across_the_ring(tmp_path: object) -> None:
    ring = Ring.create(f"pxserve-test-{id(tmp_path)}", 1 << 16)
    try:
        ring.put(Task(3, {"a": 1}, b"xyz", "page", solo=True).frame())
        ring.put(Task(4, {}, b"", "page").frame())
        first, second = Task.parse(ring.get()), Task.parse(ring.get())
        assert (first.request_id, first.solo, bytes(first.image)) == (3, True, b"xyz")
        assert (second.request_id, second.solo) == (4, False)
    finally:
        ring.unlink()
        ring.close()


def test_the_cancel_board_remembers_the_most_recent_cancellations() -> None:
    board = CancelBoard.create(multiprocess.get_context("spawn"))
    assert not board.is_cancelled(5)
    board.cancel(5)
    assert board.is_cancelled(5) and not board.is_cancelled(6) and not board.is_cancelled(0)
    for task_id in range(100, 100 + BOARD_SLOTS):
        board.cancel(task_id)
    assert not board.is_cancelled(5)  # pushed out by BOARD_SLOTS newer ones
    assert board.is_cancelled(100) and board.is_cancelled(99 + BOARD_SLOTS)


def test_the_in_hand_board_says_what_a_worker_was_running() -> None:
    board = InHandBoard.create(multiprocess.get_context("spawn"), max_batch_size=4)
    board.hold([11, 12, 13])
    assert board.held() == {11, 12, 13}
    board.hold([14])
    assert board.held() == {14}
    board.clear()
    assert board.held() == set()


def test_detection_batches_are_bounded_by_pixels_not_by_count() -> None:
    page, photo = (1600, 1248), (480, 640)
    shapes = [page] * 5 + [photo] * 20
    groups = batch_for_detection(shapes, max_pixels=4_000_000)
    assert sorted(i for g in groups for i in g) == list(range(25))
    assert all(len({shapes[i] for i in g}) == 1 for g in groups)  # one shape per call
    assert all(len(g) * shapes[g[0]][0] * shapes[g[0]][1] <= 4_000_000 for g in groups)
    assert [len(g) for g in groups if shapes[g[0]] == page] == [2, 2, 1]
    assert [len(g) for g in groups if shapes[g[0]] == photo] == [13, 7]
    assert batch_for_detection([(5000, 5000)], max_pixels=4_000_000) == [[0]]  # alone, never refused


def test_the_worker_memory_limit_is_shared_from_the_machine_or_as_set() -> None:
    machine = 24 * 1024 * MiB
    assert worker_memory_limit(ServingSettings(), 2, machine) == int(machine * 0.75 / 2)
    assert worker_memory_limit(ServingSettings(max_worker_memory_mb=1500), 2, machine) == 1500 * MiB
    assert worker_memory_limit(ServingSettings(max_worker_memory_mb=0), 2, machine) == 0


def test_a_failed_child_cancels_its_siblings() -> None:
    async def scenario() -> tuple[Outcome | list[Outcome], list[str]]:
        events: list[str] = []

        async def child(delay: float, status: int, name: str) -> Outcome:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                events.append(f"{name} cancelled")
                raise
            events.append(f"{name} done")
            return Outcome(0, status, name.encode())

        children = [child(60, 200, "slow"), child(0, 422, "bad"), child(60, 200, "slower")]
        answer = await asyncio.wait_for(EngineClient._all_or_first_failure(children), 5)
        return answer, events

    answer, events = asyncio.run(scenario())
    assert isinstance(answer, Outcome) and answer.status == 422 and answer.body == b"bad"
    assert sorted(events) == ["bad done", "slow cancelled", "slower cancelled"]
