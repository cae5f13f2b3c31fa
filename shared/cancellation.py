"""Telling a worker that tasks it holds are no longer wanted.

When a client disconnects, a request's deadline passes, or a sibling task
fails, the front stops waiting for that request's tasks. Those still in the
front's backlog are simply never sent; those already written to a worker's
ring are named on that worker's :class:`CancelBoard`, which the worker reads
before it runs a task (and between the steps of a long batch), so abandoned
work costs at most the step already running.

The board is a small array of task ids in shared memory, written only by the
front and read only by the worker: appends go round a circle, so it holds the
most recent cancellations. A task can only be cancelled while its worker
holds it, and a worker holds at most ``2 * max_batch_size`` tasks (see
frontend/engine_client.py), so a circle far larger than that never forgets
a cancellation that still matters. Aligned 8-byte stores are atomic on every
platform pxserve runs on, so no lock is needed.
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
