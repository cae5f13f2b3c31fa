"""The engine client: the front's only way to get work done by workers.

:meth:`EngineClient.admission` admits a request before its body is read (or
refuses at once with 503 when ``queue_capacity`` is reached).
:meth:`EngineClient.submit` is a coroutine that never blocks the loop: it
writes the task into the ring of the least-loaded ready worker,
rings its doorbell and awaits a future. Outcomes arrive when a worker's
reply doorbell becomes readable; they are matched to futures by request id,
and ids are never reused, so a late answer can never reach another request.

Several pipelines share the workers, fairly: each pipeline has its own
admission places (its ``queue_capacity``) and its own backlog, a worker
holds at most ``2 * max_batch_size`` tasks of each pipeline, and the
backlogs are flushed one task per pipeline in turn. So a flood on one
pipeline fills its own places and queue, never another's (the worker side
of fairness is in workers/task_queues.py).

When a ring is full the task waits in its pipeline's FIFO backlog, flushed
as answers free space. When a worker dies, its unanswered tasks are retried
once on another worker, then answered 503.

A stage that answers with a fan-out (see shared/messages.py) has its child
tasks dispatched like any other, each to the least-loaded worker, and its
continuation sent once they have all answered. So the pages of one PDF, or
the text lines of one page, run on every worker at once, and are batched
there with other requests' work of the same stage.

A fan-out that names itself a document's pages (:class:`DocumentPages`)
can be streamed instead (:meth:`EngineClient.open_stream`): its pages' outcomes
come back one by one in page order, with at most ``stream_window`` pages
running or finished and not yet taken, so the front holds a bounded number
of page results whatever the page count, and the pages a departed client
never reached are never sent.

Work nobody waits for is dropped. A worker is sent at most
``2 * max_batch_size`` tasks of a pipeline at a time (one batch running, one
waiting), the rest wait here; so when a request is abandoned (its client hung up, its
deadline passed, or one of its sibling tasks failed) its tasks still here are
never sent, and those a worker holds are named on that worker's cancel board
(shared/task_boards.py) so it skips them. Its admission place is given back
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any

from pxserve.frontend.supervisor import Supervisor, WorkerHandle
from pxserve.shared.config import ServerConfig, ServingSettings
from pxserve.shared.errors import RequestError
from pxserve.shared.messages import FAN_OUT, PARTIAL, DocumentPages, FanOut, Outcome, Task
from pxserve.shared.ring import RecordTooLargeError, RingFullError

log = logging.getLogger("pxserve.engine")


class WorkerLostError(Exception):
    """The worker holding a task exited before answering it."""

    def __init__(self, exitcode: int | None = None, running: bool = True) -> None:
        super().__init__(exitcode)
        self.exitcode = exitcode
        self.running = running  # the task was in the batch it ran, not waiting in its ring

    @property
    def crashed(self) -> str | None:
        """The signal's name when the worker crashed (not when it was killed or stopped)."""
        if self.exitcode is not None and -self.exitcode in CRASH_SIGNALS:
            return signal.Signals(-self.exitcode).name
        return None


# Pages of a streamed document in flight per worker, once its first page is back (one per worker
# until then): with fewer, a worker waits whenever the page to send next is slower than those after it
# (two per worker read 2-14% fewer pages/s than a whole answer in benchmarks/streaming.py runs);
# with more, the front holds more finished pages.
STREAM_PAGES_PER_WORKER = 4
# Sends of one task before giving up, when its workers keep exiting.
MAX_ATTEMPTS = 4
# A worker dying of one of these crashed in native code, on its own.
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL}


@dataclass
class Reading:
    """What the engine saw of a request's documents while running it (for the front's notes)."""

    documents: list[DocumentPages] = field(default_factory=list)

    @property
    def pages_dropped(self) -> int:
        """Pages of a file the answer does not cover (the most of any document it read)."""
        return max((d.dropped for d in self.documents), default=0)


@dataclass(frozen=True)
class PageStream:
    """A streamed request's document: what the file holds, and its pages' outcomes in
    page order (the iterator stops after the first that failed)."""

    pages: DocumentPages
    outcomes: AsyncIterator[Outcome]


@dataclass(eq=False)
class _Pending:
    task: Task
    future: asyncio.Future[Outcome]
    worker: WorkerHandle | None = None


class EngineClient:
    def __init__(self, supervisor: Supervisor, config: ServerConfig) -> None:
        self.supervisor = supervisor
        # Each pipeline's own limits (queue_capacity, request_timeout_s).
        self.settings: dict[str, ServingSettings] = {p.pipeline_name: p.Serving for p in config.pipelines}
        self.admitted_by: dict[str, int] = dict.fromkeys(self.settings, 0)
        self.on_drop: Callable[[], None] = lambda: None  # a worker was told to skip a task
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._backlogs: dict[str, deque[_Pending]] = {name: deque() for name in self.settings}
        self._background: dict[str, deque[_Pending]] = {name: deque() for name in self.settings}
        # One batch running and one queued behind it keeps a worker busy;
        # anything more waits here, where dropping it is free.
        self.max_outstanding = 2 * config.engine.max_batch_size
        # Background tasks (jobs' pages) a worker holds at once: few, so a job's batches are short
        # (a request waits for one of its model calls), yet enough for a lone job's pages to
        # pipeline through the stages. Measured (benchmarks/jobs.py, 2 cores, max_batch_size 8):
        # with 4, a 10-page job took 1.08x the same PDF sent directly, a page sent under 20 queued
        # jobs 1.35x its idle time, jobs alone read 1.07x the pages/s of requests at concurrency 4;
        # with 2: 1.15x, 1.74x, 0.96x; with 8: 0.97-1.04x, 1.9x, 0.80x.
        self.max_background = max(2, config.engine.max_batch_size // 2)
        self._held_background: dict[int, int] = {}  # id(worker handle) -> background tasks it holds
        # Pages of one streamed document running or done and not yet sent (see STREAM_PAGES_PER_WORKER).
        self.stream_window = STREAM_PAGES_PER_WORKER * max(1, len(supervisor.plan))
        self.stream_start = max(1, len(supervisor.plan))  # ... and until its first page is back
        supervisor.on_ready = self._worker_ready
        supervisor.on_lost = self._worker_lost

    @property
    def admitted(self) -> int:
        """Requests admitted and not yet answered, all pipelines together."""
        return sum(self.admitted_by.values())

    # -- the public coroutine ---------------------------------------------
    @contextlib.asynccontextmanager
    async def admission(self, pipeline: str) -> AsyncIterator[float]:
        """Hold one of the pipeline's ``queue_capacity`` places from before the
        body is read until the answer is ready, so bodies held in memory are
        bounded too.

        Yields the request's deadline (event-loop time): receiving the body
        and getting a result must both be done by then.
        """
        serving = self.settings[pipeline]
        if not self.supervisor.ready:
            raise RequestError(503, "not ready: the workers are loading the models")
        if self.admitted_by[pipeline] >= serving.queue_capacity:
            raise RequestError(503, "server is at capacity; retry shortly")
        self.admitted_by[pipeline] += 1
        try:
            yield asyncio.get_running_loop().time() + serving.request_timeout_s
        finally:
            self.admitted_by[pipeline] -= 1

    async def submit(
        self, pipeline: str, task: Task, deadline: float, reading: Reading | None = None
    ) -> Outcome:
        """Run one admitted request to its final outcome; 504 if ``deadline`` passes first.

        ``reading`` collects what the engine saw of the request's documents (pages dropped).
        """
        async with self._deadline(pipeline, deadline):
            return await self._complete(task.in_pipeline(pipeline), reading or Reading())

    async def open_stream(
        self,
        pipeline: str,
        task: Task,
        deadline: float,
        pages: Collection[int] | None = None,
        background: bool = False,
    ) -> Outcome | PageStream:
        """Run a streamed request's first task by ``deadline``: a document's pages come back as a
        :class:`PageStream`, not yet started; any other answer runs to its final outcome, as
        :meth:`submit`. Each page must then be done within ``request_timeout_s`` of the one
        before it was taken (504 otherwise), however long the whole document takes.

        ``pages``: only these of the document's pages (0-based) are run, in order (a job's
        page ranges, or the pages it has not read yet). ``background``: its tasks go after every
        request's (a job's; see the module docstring)."""
        task = task.in_pipeline(pipeline, streamed=True, background=background)
        async with self._deadline(pipeline, deadline):
            outcome = await self._run_retrying(task)
            if outcome.status != FAN_OUT:
                return outcome
            plan = FanOut.decode(outcome.body)
            if plan.pages is None:
                return await self._follow(task, plan, Reading())
        timeout = self.settings[pipeline].request_timeout_s
        children = plan.children if pages is None else [c for i, c in enumerate(plan.children) if i in pages]
        return PageStream(plan.pages, self._pages_in_order(task, children, timeout))

    @contextlib.asynccontextmanager
    async def _deadline(self, pipeline: str, deadline: float) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout_at(deadline):
                yield
        except TimeoutError:
            timeout = self.settings[pipeline].request_timeout_s
            raise RequestError(504, f"no result within the {timeout:g} s request deadline") from None

    async def _complete(self, task: Task, reading: Reading) -> Outcome:
        """Run a task, and the children and continuation of any fan-out it answers."""
        outcome = await self._run_retrying(task)
        if outcome.status == FAN_OUT:
            return await self._follow(task, FanOut.decode(outcome.body), reading)
        return outcome

    async def _follow(self, task: Task, plan: FanOut, reading: Reading) -> Outcome:
        """Run the fan-out ``task`` answered: its children, then its continuation, and so on."""
        while True:
            if plan.pages is not None:
                reading.documents.append(plan.pages)
            answers = await self._all_or_first_failure(
                [self._complete(child.child_of(task), reading) for child in plan.children]
            )
            if isinstance(answers, Outcome):
                return answers  # e.g. one page of a PDF could not be read
            task = plan.then.child_of(task)  # a continuation that fans out again hands on its own payload
            outcome = await self._run_retrying(task.with_children([a.body for a in answers]))
            if outcome.status != FAN_OUT:
                return outcome
            plan = FanOut.decode(outcome.body)

    async def _pages_in_order(
        self, parent: Task, pages: list[Task], timeout_s: float
    ) -> AsyncIterator[Outcome]:
        """Each page's final outcome in page order, up to the first failure.

        Until the first page is back, only one page per worker runs (the
        first page's lines, tables and so on share the workers with one
        page each, not four), so it comes back in about one page's time;
        then at most ``stream_window`` pages are running or done and not yet
        taken, the next starting when one is taken. Leaving early (the client
        went away) cancels those running; the rest were never sent.
        """
        waiting = iter(pages)
        running: deque[asyncio.Future[Outcome]] = deque()
        window = self.stream_start
        try:
            for _ in pages:
                for page in itertools.islice(waiting, window - len(running)):
                    running.append(asyncio.ensure_future(self._complete(page.child_of(parent), Reading())))
                try:
                    async with asyncio.timeout(timeout_s):
                        outcome = await running[0]
                except TimeoutError:
                    raise RequestError(504, f"no page within the {timeout_s:g} s request deadline") from None
                running.popleft()
                window = self.stream_window
                yield outcome
                if not outcome.ok:
                    return
        finally:
            for page in running:
                page.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    @staticmethod
    async def _all_or_first_failure(children: list[Coroutine[Any, Any, Outcome]]) -> list[Outcome] | Outcome:
        """Every child's outcome, in order; or the first failure, its siblings cancelled.

        A PDF whose third page cannot be read answers 4xx at once, and its
        other pages stop costing worker time.
        """
        running = [asyncio.ensure_future(child) for child in children]
        try:
            for next_done in asyncio.as_completed(running):
                outcome = await next_done
                if not outcome.ok:
                    return outcome
            return [child.result() for child in running]
        finally:
            for child in running:
                child.cancel()
            await asyncio.gather(*running, return_exceptions=True)  # let each one unwind

    async def _run_retrying(self, task: Task) -> Outcome:
        """Run a task, again if its worker exits, blaming it only for what it ran.

        A task that was only waiting in a dead worker's ring is simply sent
        again. One that was running is retried once, in a batch of its own
        if the worker crashed (a native crash, such as a PDF library fed
        hostile bytes); if that crashes a worker too, the input is the cause:
        422, and it is not tried a third time. Tasks batched with it are
        never blamed for its crash.
        """
        blamed: WorkerLostError | None = None
        solo = False
        for _ in range(MAX_ATTEMPTS):
            try:
                return await self._run_once(task, solo)
            except WorkerLostError as lost:
                if not lost.running:
                    log.warning(
                        "resending a task that waited on a worker that exited (code %s)", lost.exitcode
                    )
                    continue
                if blamed is None:
                    log.warning("retrying a task whose worker exited running it (code %s)", lost.exitcode)
                    blamed, solo = lost, solo or lost.crashed is not None
                    continue
                if blamed.crashed and lost.crashed:
                    log.error(
                        "a task crashed two workers (%s, %s); refusing it", blamed.crashed, lost.crashed
                    )
                    raise RequestError(
                        422,
                        f"this input crashed the worker processing it twice ({lost.crashed}); "
                        "it was not tried again",
                    ) from None
                log.error("a task lost two workers running it (codes %s, %s)", blamed.exitcode, lost.exitcode)
                break
        raise RequestError(503, "the worker processing this request exited; retry")

    async def _run_once(self, task: Task, solo: bool = False) -> Outcome:
        request_id = next(self._ids)
        pending = _Pending(task.with_id(request_id, solo), asyncio.get_running_loop().create_future())
        self._pending[request_id] = pending
        try:
            if not self._dispatch(pending):
                self._backlog_of(pending).append(pending)
            return await pending.future
        finally:
            self._pending.pop(request_id, None)
            if pending.future.cancelled():
                self._drop(pending)

    def _drop(self, pending: _Pending) -> None:
        """Nobody waits for this task any more: never send it, or tell its worker to skip it."""
        if pending.worker is None:
            with contextlib.suppress(ValueError):
                self._backlog_of(pending).remove(pending)
            return
        self._settle(pending.worker, pending)
        pending.worker.cancels.cancel(pending.task.request_id)
        self.on_drop()
        self._flush_backlog()  # its place in the worker's share is free

    # -- dispatch ----------------------------------------------------------
    def _backlog_of(self, pending: _Pending) -> deque[_Pending]:
        backlogs = self._background if pending.task.background else self._backlogs
        return backlogs[pending.task.pipeline]

    def _settle(self, handle: WorkerHandle, pending: _Pending) -> None:
        """The worker no longer holds this task (answered or dropped)."""
        handle.settle(pending.task.pipeline)
        if pending.task.background and id(handle) in self._held_background:
            self._held_background[id(handle)] -= 1

    def _dispatch(self, pending: _Pending) -> bool:
        """Write the task to the least-loaded ready worker; False if all are full.

        Full means its ring is, or it holds ``max_outstanding`` tasks of this pipeline already.
        A background task waits while any request's task does, and a worker holds at most
        ``max_background`` of them.
        """
        background = pending.task.background
        if background and any(self._backlogs.values()):
            return False
        frame = pending.task.frame()
        pipeline = pending.task.pipeline
        ready = (
            h
            for h in self.supervisor.workers.values()
            if h.ready
            and h.outstanding_by.get(pipeline, 0) < self.max_outstanding
            and not (background and self._held_background.get(id(h), 0) >= self.max_background)
        )
        workers = sorted(ready, key=lambda h: h.outstanding)
        for handle in workers:
            try:
                handle.requests.put(frame)
            except RingFullError:
                continue
            except RecordTooLargeError:
                raise RequestError(413, self._too_large(pending.task)) from None
            handle.take(pipeline)
            if background:
                self._held_background[id(handle)] = self._held_background.get(id(handle), 0) + 1
            pending.worker = handle
            # A worker that died a moment ago is not reaped yet: its bell is
            # broken, and the task just written is retried once it is reaped.
            handle.bell.ring()
            return True
        return False

    @staticmethod
    def _too_large(task: Task) -> str:
        """Why a task does not fit a ring: the request's file, or its parts' results put together."""
        size = sum(len(part) for part in task.frame()) / 2**20
        if "children" not in task.params:
            return f"the file ({size:.1f} MiB with its settings) is too large for the server's shared memory"
        return (
            f"the results of this request's {len(task.params['children'])} parts ({size:.1f} MiB) are too "
            "large to put together in the server's shared memory (Serving.request_ring_mb); for a long PDF, "
            "stream the answer page by page (Accept: application/x-ndjson)"
        )

    def _flush_backlog(self) -> None:
        """Send what waits here, one task of each pipeline in turn, while workers take them;
        background tasks once no request's task waits."""
        self._flush(self._backlogs)
        if not any(self._backlogs.values()):
            self._flush(self._background)

    def _flush(self, backlogs: dict[str, deque[_Pending]]) -> None:
        progress = True
        while progress:
            progress = False
            for backlog in backlogs.values():
                while backlog and backlog[0].future.done():
                    backlog.popleft()
                if not backlog:
                    continue
                try:
                    if not self._dispatch(backlog[0]):
                        continue
                except RequestError as exc:
                    backlog[0].future.set_exception(exc)
                backlog.popleft()
                progress = True

    # -- callbacks from the loop and the supervisor -------------------------
    def _collect(self, handle: WorkerHandle) -> None:
        """The worker's reply doorbell rang: read every outcome it wrote."""
        if not handle.reply.drain():
            asyncio.get_running_loop().remove_reader(handle.reply.read_fd)
        self._take_outcomes(handle)
        self._flush_backlog()

    def _take_outcomes(self, handle: WorkerHandle) -> None:
        while (record := handle.responses.get()) is not None:
            outcome = Outcome.parse(record)
            if outcome.status == PARTIAL:
                handle.pieces.setdefault(outcome.request_id, []).append(outcome.body)
                continue
            pieces = handle.pieces.pop(outcome.request_id, None)
            if pieces is not None:
                outcome = Outcome(outcome.request_id, outcome.status, b"".join([*pieces, outcome.body]))
            pending = self._pending.get(outcome.request_id)
            if pending is None or pending.worker is not handle or pending.future.done():
                continue  # its request timed out, or was retried elsewhere
            self._settle(handle, pending)
            pending.future.set_result(outcome)

    def _worker_ready(self, handle: WorkerHandle) -> None:
        asyncio.get_running_loop().add_reader(handle.reply.read_fd, self._collect, handle)
        self._flush_backlog()

    def _worker_lost(self, handle: WorkerHandle) -> None:
        """Keep what the worker finished; send the rest back for one retry."""
        if handle.reply.read_fd >= 0:
            asyncio.get_running_loop().remove_reader(handle.reply.read_fd)
            self._take_outcomes(handle)
        running = handle.in_hand.held()
        for pending in list(self._pending.values()):
            if pending.worker is handle and not pending.future.done():
                pending.worker = None
                lost = WorkerLostError(handle.process.exitcode, pending.task.request_id in running)
                pending.future.set_exception(lost)
        handle.outstanding = 0
        handle.outstanding_by.clear()
        self._held_background.pop(id(handle), None)
        handle.pieces.clear()
