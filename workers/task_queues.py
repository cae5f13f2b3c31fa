"""The tasks a worker has read from its ring, one queue per pipeline.

A worker reads every record waiting in its ring into these queues at once,
so a classification task is seen even when it arrived behind a page of OCR
work, and takes its next batch from the pipelines in turn (round-robin).
Between the model calls of a long batch the worker runs one batch of
another pipeline that has work waiting (see worker.py), so a light stream
on one pipeline waits about one model call of another, never its queue.

The front sends a worker at most ``2 * max_batch_size`` tasks per pipeline
(frontend/engine_client.py), and the worker reads from its ring only while
the queues hold fewer bytes than ``max_bytes`` (the ring's size): a copy of
a record here costs heap, and the pages of a large PDF each carry the file.
So a worker's queued work costs at most its ring again; behind that much
work of one pipeline, another's task waits in the ring until it is read.

Within a pipeline, a request's tasks go before *background* ones (a job's
pages, see frontend/jobs/): each queue holds its foreground tasks first, in
arrival order, then its background ones, so a request sent while jobs run
waits for the batch in hand, not for the jobs' queue.
"""

from __future__ import annotations

from collections import deque

from pxserve.shared.messages import Task


class TaskQueues:
    def __init__(self, pipelines: list[str], max_bytes: int = 1 << 62) -> None:
        self._queues: dict[str, deque[Task]] = {name: deque() for name in pipelines}
        self._foreground = dict.fromkeys(pipelines, 0)  # the queue's leading tasks that are not background
        self._order = list(pipelines)
        self._turn = 0  # index into _order of the pipeline served next
        self.max_bytes = max_bytes
        self.bytes = 0  # payload bytes queued

    @property
    def has_room(self) -> bool:
        """Whether to read more from the ring."""
        return self.bytes < self.max_bytes

    def add(self, task: Task) -> bool:
        """Queue a task; False if it names a pipeline this worker does not serve."""
        queue = self._queues.get(task.pipeline)
        if queue is None:
            return False
        if task.background:
            queue.append(task)
        else:
            queue.insert(self._foreground[task.pipeline], task)
            self._foreground[task.pipeline] += 1
        self.bytes += len(task.image)
        return True

    def _pop(self, queue: deque[Task]) -> Task:
        task = queue.popleft()
        self.bytes -= len(task.image)
        if not task.background:
            self._foreground[task.pipeline] -= 1
        return task

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def waiting(self, pipeline: str) -> int:
        return len(self._queues[pipeline])

    def next_pipeline(self, besides: str | None = None) -> str | None:
        """The next pipeline in turn with work waiting (not ``besides``), and advance the turn."""
        count = len(self._order)
        for step in range(count):
            index = (self._turn + step) % count
            name = self._order[index]
            if name != besides and self._queues[name]:
                self._turn = (index + 1) % count
                return name
        return None

    def head_is_solo(self, pipeline: str) -> bool:
        queue = self._queues[pipeline]
        return bool(queue) and queue[0].solo

    def foreground(self, pipeline: str) -> int:
        """Tasks of ``pipeline`` waiting that are not background."""
        return self._foreground[pipeline]

    def take(self, pipeline: str, max_size: int) -> list[Task]:
        """Up to ``max_size`` tasks of one pipeline; a ``solo`` task is a batch by itself. Requests'
        tasks and background ones are never in one batch: a request's waits for no job's."""
        queue = self._queues[pipeline]
        if queue and queue[0].solo:
            return [self._pop(queue)]
        batch: list[Task] = []
        kind = queue[0].background if queue else False
        while queue and len(batch) < max_size and not queue[0].solo and queue[0].background == kind:
            batch.append(self._pop(queue))
        return batch
