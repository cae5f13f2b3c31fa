"""The CPU's cores, shared by its workers: how many threads a model call may use now.

Each CPU worker owns ``cpu_threads`` cores (on 2 cores: two workers of one
thread). When fewer workers are busy than that, the busy one's model calls
may use the idle workers' cores too: a lone page is detected on both cores
instead of one, while the other core would have waited. When every worker is
busy, each uses its own share, as before, and no core runs two threads.

The workers agree through one small array in shared memory: each worker's
slot holds the threads it uses now, 0 while it waits for work
(``let_go``), its own share while it holds a batch (``hold``), and up to every
idle core for the length of one model call (``call``). A call takes what the
others leave, rounded down to a thread count its engine has loaded; a worker
whose share is lent out waits for the running call to end (one model call, at
most ``WAIT_LIMIT_S``) before it starts its own, so cores are never
oversubscribed. The front creates the array; a worker that dies gives its
slot back through the front (``reset``).

A job's work gives way (``give_way``): between the model calls of a batch made
only of background tasks (a job's pages), a worker whose peers are serving a
request (their ``urgent`` slot set) lets its cores go until they are done, at
most ``GIVE_WAY_LIMIT_S``, so a request sent while jobs run borrows them as it
would on an idle server.

No lock: a worker SIGKILLed while holding a cross-process lock would leave
it held, and every other worker blocked for good (the soak's SIGKILL found
it). Each worker writes only its own slot. A borrower writes its claim,
then reads the others again and takes it back if they no longer leave room;
a worker taking up its share writes it before it reads. Of two workers
racing, at least one sees the other's write, so both cannot overcommit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

WAIT_POLL_S = 0.002
# A worker waits at most this long for its own cores to come back (one long model
# call on every core); past it, it runs anyway rather than stall.
WAIT_LIMIT_S = 5.0
# A job's batch pauses at most this long, between two model calls, for requests on other workers.
GIVE_WAY_LIMIT_S = 5.0


def thread_counts(share: int, cores: int) -> tuple[int, ...]:
    """The thread counts a worker's engines load: its share, doubling, up to every core."""
    counts = [share]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    if counts[-1] < cores:
        counts.append(cores)
    return tuple(counts)


class Cores(Protocol):
    """What a worker's backends ask before each model call."""

    counts: tuple[int, ...]

    def hold(self) -> None: ...

    def let_go(self) -> None: ...

    def call(self, most: int) -> Any: ...  # a context manager yielding the threads granted

    def serving_requests(self, urgent: bool) -> None: ...

    def give_way(self, beat: Any) -> None: ...

    def others_at_work(self) -> bool: ...


class CoreShares:
    """The threads each CPU worker slot uses now, in shared memory."""

    def __init__(self, cores: int, shared: Any, urgent: Any = None) -> None:
        self.cores = cores
        self.shared = shared  # a multiprocess RawArray("i", slots); slot i written by worker i
        # 1 while worker i runs a request's batch (not only a job's); written by worker i.
        self.urgent = urgent if urgent is not None else [0] * len(shared)

    @classmethod
    def create(cls, context: Any, cores: int, slots: int) -> CoreShares:
        return cls(cores, context.RawArray("i", slots), context.RawArray("i", slots))

    @property
    def arrays(self) -> tuple[Any, Any]:
        """What a worker process is given to make its own view."""
        return self.shared, self.urgent

    def reset(self, slot: int) -> None:
        """A worker of this slot died or was replaced: whatever it held is free."""
        self.shared[slot] = 0
        self.urgent[slot] = 0

    def others(self, slot: int) -> int:
        return sum(self.shared) - self.shared[slot]

    def urgent_elsewhere(self, slot: int) -> bool:
        return sum(self.urgent) - self.urgent[slot] > 0

    def worker(self, slot: int, share: int) -> WorkerCores:
        return WorkerCores(self, slot, share)


class WorkerCores:
    """One worker's view: hold its share while it has work, borrow idle cores for a call."""

    def __init__(self, shares: CoreShares, slot: int, share: int) -> None:
        self.shares, self.slot, self.share = shares, slot, share
        self.counts = thread_counts(share, shares.cores)

    def hold(self) -> None:
        """A batch is in hand: this worker's own cores are in use."""
        self._set(self.share)

    def let_go(self) -> None:
        """Waiting for work: this worker's cores are free for the others' calls."""
        self._set(0)

    def _set(self, threads: int) -> None:
        self.shares.shared[self.slot] = threads

    def serving_requests(self, urgent: bool) -> None:
        """Whether the batch in hand is a request's (others' job batches give way to it)."""
        self.shares.urgent[self.slot] = int(urgent)

    def others_at_work(self) -> bool:
        """Whether another worker holds work now (its part of a request may come here next)."""
        return self.shares.others(self.slot) > 0

    def give_way(self, beat: Any) -> None:
        """Between two model calls of a job's batch: while another worker serves a request, let
        this worker's cores go to it (at most ``GIVE_WAY_LIMIT_S``), then take them back."""
        if not self.shares.urgent_elsewhere(self.slot):
            return
        self.let_go()
        deadline = time.monotonic() + GIVE_WAY_LIMIT_S
        while self.shares.urgent_elsewhere(self.slot) and time.monotonic() < deadline:
            time.sleep(WAIT_POLL_S)
        beat()
        self.hold()

    @contextmanager
    def call(self, most: int | None = None) -> Iterator[int]:
        """The threads one model call may use: its share plus what the other workers leave,
        up to ``most`` (the most its engine loaded)."""
        threads = self._borrow(most or self.shares.cores)
        try:
            yield threads
        finally:
            self.hold()

    def _borrow(self, most: int) -> int:
        shares, deadline = self.shares, time.monotonic() + WAIT_LIMIT_S
        while True:
            free = shares.cores - shares.others(self.slot)
            late = time.monotonic() > deadline
            if free >= self.share or late:
                threads = max(c for c in self.counts if c <= max(min(free, most), self.share))
                self._set(threads)
                if late or threads == self.share or shares.others(self.slot) + threads <= shares.cores:
                    return threads
                self._set(self.share)  # another worker took up its share meanwhile: look again
            time.sleep(WAIT_POLL_S)


class OwnCores:
    """A worker that shares nothing (a GPU worker, or one alone): always its own threads."""

    def __init__(self, share: int) -> None:
        self.share = share
        self.counts = (share,)

    def hold(self) -> None:
        pass

    def let_go(self) -> None:
        pass

    def serving_requests(self, urgent: bool) -> None:
        pass

    def give_way(self, beat: Any) -> None:
        pass

    def others_at_work(self) -> bool:
        return False

    @contextmanager
    def call(self, most: int | None = None) -> Iterator[int]:
        yield self.share
