"""Workers lend idle cores to a lone model call, and never oversubscribe the CPU (shared/core_shares.py)."""

from __future__ import annotations

import threading
import time

import multiprocess
import pytest

from pxserve.shared import core_shares
from pxserve.shared.core_shares import CoreShares, thread_counts


@pytest.fixture()
def shares() -> CoreShares:
    return CoreShares.create(multiprocess.get_context("spawn"), cores=4, slots=4)


def test_thread_counts_double_from_a_share_up_to_every_core() -> None:
    assert thread_counts(1, 1) == (1,)
    assert thread_counts(1, 2) == (1, 2)
    assert thread_counts(1, 3) == (1, 2, 3)
    assert thread_counts(1, 16) == (1, 2, 4, 8, 16)
    assert thread_counts(2, 12) == (2, 4, 8, 12)


def test_a_lone_call_borrows_every_idle_core_and_gives_them_back(shares: CoreShares) -> None:
    workers = [shares.worker(slot, 1) for slot in range(4)]
    workers[0].hold()
    with workers[0].call() as threads:
        assert threads == 4
        assert list(shares.shared) == [4, 0, 0, 0]
    assert list(shares.shared) == [1, 0, 0, 0]  # its own share, while the batch lasts
    workers[0].let_go()
    assert list(shares.shared) == [0, 0, 0, 0]


def test_busy_workers_keep_to_their_own_share(shares: CoreShares) -> None:
    workers = [shares.worker(slot, 1) for slot in range(4)]
    for worker in workers[:3]:
        worker.hold()
    with workers[0].call() as threads:
        assert threads == 2  # one idle core lent: 1 + 1, and 2 is a loaded count
    for worker in workers:
        worker.hold()
    for worker in workers:
        with worker.call() as threads:
            assert threads == 1
    assert sum(shares.shared) == 4


def test_a_worker_whose_share_is_lent_waits_for_the_call_to_end(shares: CoreShares) -> None:
    lone, late = shares.worker(0, 2), shares.worker(1, 2)
    lone.hold()
    started, finished = threading.Event(), threading.Event()

    def long_call() -> None:
        with lone.call() as threads:
            assert threads == 4
            started.set()
            time.sleep(0.3)
        finished.set()

    thread = threading.Thread(target=long_call)
    thread.start()
    assert started.wait(5)
    late.hold()
    assert sum(shares.shared) == 6  # held, not yet running: its call waits
    with late.call() as threads:
        assert finished.is_set(), "the late call ran while its cores were lent"
        assert threads == 2
        assert sum(shares.shared) <= 4
    thread.join()


def test_a_share_that_never_comes_back_is_waited_for_only_so_long(
    shares: CoreShares, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_shares, "WAIT_LIMIT_S", 0.2)
    shares.shared[0] = 4  # a worker that died in a call, not yet reset by the front
    late = shares.worker(1, 1)
    late.hold()
    started = time.monotonic()
    with late.call() as threads:
        assert threads == 1
    assert 0.2 <= time.monotonic() - started < 3
    shares.reset(0)
    with late.call() as threads:
        assert threads == 4  # every core free again


def test_a_worker_sees_whether_any_other_holds_work(shares: CoreShares) -> None:
    """What a waiting worker asks before it gives back its memory (workers/worker.py)."""
    workers = [shares.worker(slot, 1) for slot in range(4)]
    assert not any(w.others_at_work() for w in workers)
    workers[2].hold()
    assert workers[0].others_at_work() and not workers[2].others_at_work()
    with workers[2].call():  # borrowing the idle cores is work too
        assert workers[1].others_at_work()
    workers[2].let_go()
    assert not workers[0].others_at_work()
