"""What the front and a worker tell each other about tasks outside the rings.

:class:`CancelBoard` (front -> worker): tasks it holds that nobody wants any
more. :class:`InHandBoard` (worker -> front): the tasks of the batch it is
running now, read by the front when the worker dies, to tell the task that
crashed it from those that merely waited in its ring.

Cancellation
------------

When a client disconnects, a request's deadline passes, or a sibling task
fails, the front stops waiting for that request's tasks. Those still in the
front's backlog are simply never sent; those already written to a worker's
ring are named on that worker's :class:`CancelBoard`, which the worker reads
before it runs a task (and between the steps of a long batch), so abandoned
work costs at most the step already running.

The board is a small array of task ids in shared memory, written only by the
front and read only by the worker: appends go round a circle, so it holds the
most recent cancellations. A task can only be cancelled while its worker
holds it, and a worker holds at most ``2 * max_batch_size`` tasks of each
pipeline it serves (see frontend/engine_client.py), so a circle far larger
than that never forgets a cancellation that still matters. Aligned 8-byte
stores are atomic on every platform pxserve runs on, so no lock is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BOARD_SLOTS = 512


class CancelBoard:
    """Cancelled task ids; slot 0 counts appends, slots 1.. hold the ids."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared  # a multiprocess RawArray("Q", BOARD_SLOTS + 1)
        self._ids = np.frombuffer(shared, dtype=np.uint64)

    @classmethod
    def create(cls, context: Any) -> CancelBoard:
        return cls(context.RawArray("Q", BOARD_SLOTS + 1))

    def cancel(self, task_id: int) -> None:
        """Front side: name one task id (never 0) as cancelled."""
        count = int(self._ids[0])
        self._ids[1 + count % BOARD_SLOTS] = task_id
        self._ids[0] = count + 1

    def is_cancelled(self, task_id: int) -> bool:
        """Worker side: has the front cancelled this task?"""
        return task_id != 0 and bool((self._ids[1:] == task_id).any())


class InHandBoard:
    """The ids of the batch a worker is running; slot 0 holds their count.

    Written only by the worker, read by the front only once the worker has
    exited, so it needs no lock.
    """

    def __init__(self, shared: Any) -> None:
        self.shared = shared  # a multiprocess RawArray("Q", max_batch_size + 1)
        self._ids = np.frombuffer(shared, dtype=np.uint64)

    @classmethod
    def create(cls, context: Any, max_batch_size: int) -> InHandBoard:
        return cls(context.RawArray("Q", max_batch_size + 1))

    def hold(self, task_ids: list[int]) -> None:
        """Worker side: this batch is about to run."""
        self._ids[0] = 0
        self._ids[1 : 1 + len(task_ids)] = task_ids
        self._ids[0] = len(task_ids)

    def clear(self) -> None:
        """Worker side: the batch is answered."""
        self._ids[0] = 0

    def held(self) -> set[int]:
        """Front side, after the worker died: what it was running."""
        return {int(i) for i in self._ids[1 : 1 + int(self._ids[0])]}
