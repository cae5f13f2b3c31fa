"""The supervisor: spawn, watch, reap, restart, recycle and stop worker processes.

It lives in the front process and is driven entirely by the event loop:
a worker's status pipe and its process sentinel are file descriptors, so
"worker ready", "worker failed" and "worker exited" arrive as loop
callbacks, never by polling. Each worker slot owns its two rings; a
restarted worker gets fresh rings, so nothing half-written survives it.

Once a second :meth:`Supervisor.watch` reads each worker's heartbeat, CPU
time and resident memory. A worker that is silent and idle is hung and
killed; one that grew past ``max_worker_memory_mb`` is recycled, as
gunicorn's ``max_requests`` recycles workers: its successor is spawned
first, takes over the slot once ready, and the old worker exits once it has
answered everything it holds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import multiprocess

from pxserve.frontend.placement import Placement, RingSizes, kept_memory_limit
from pxserve.shared.config import MiB, ServerConfig
from pxserve.shared.core_shares import CoreShares
from pxserve.shared.messages import WorkerEvent
from pxserve.shared.process_stats import cpu_seconds, rss_bytes
from pxserve.shared.ring import Doorbell, Ring, shm_dir
from pxserve.shared.task_boards import CancelBoard, InHandBoard
from pxserve.workers.worker import ModelSpec, WorkerSpec, worker_main

log = logging.getLogger("pxserve.supervisor")

RING_PREFIX = "pxserve-"
STOP_GRACE_S = 10.0
# A worker that dies sooner than this after being ready is restarted after
# a pause, so a crash loop does not eat the machine.
RESTART_BACKOFF_S = 1.0
# How long reaping waits for an exited worker's status (normally microseconds).
REAP_WAIT_S = 1.0
# CPU a worker must burn in a watchdog round to count as busy, not hung.
BUSY_CPU_S = 0.05
# After a successor failed to load, wait this long before trying again.
RECYCLE_RETRY_S = 30.0
# A worker serves at least this long before it is recycled, so a limit set
# below what a freshly loaded worker needs recycles now and then, not always.
MIN_WORKER_LIFE_S = 10.0


def heartbeat_interval(stall_timeout_s: float) -> float:
    """How often an idle worker wakes to beat: often enough that a few late
    beats (a busy machine) never look like a stall, rarely enough to cost
    nothing measurable."""
    return min(1.0, stall_timeout_s / 4)


class StartupError(RuntimeError):
    """A worker could not load its model; the message says which and why."""


@dataclass(eq=False)
class WorkerHandle:
    """The front's view of one running worker process."""

    slot: int
    placement: Placement
    process: Any
    requests: Ring
    responses: Ring
    bell: Doorbell  # write end: wakes the worker
    reply: Doorbell  # read end: the worker woke us
    status: Any  # multiprocess Connection, read end
    heartbeat: Any  # shared double: the worker's time.monotonic() at its last beat
    cancels: CancelBoard  # tasks it holds that nobody waits for any more
    in_hand: InHandBoard  # the batch it is running (read once it has died)
    ready: bool = False
    reaped: bool = False
    retiring: bool = False  # replaced by a successor: gets no new work, exits when done
    started_at: float = field(default_factory=time.monotonic)
    ready_at: float = 0.0
    outstanding: int = 0  # tasks written to the ring and not yet answered
    outstanding_by: dict[str, int] = field(default_factory=dict)  # the same, by pipeline
    pieces: dict[int, list[bytes]] = field(default_factory=dict)  # partial outcomes by task id
    rss: int = 0  # resident bytes at the last watchdog round
    cpu: float = 0.0  # CPU seconds at the last watchdog round
    busy_at: float = field(default_factory=time.monotonic)  # last round it burned CPU
    recycle_after: float = 0.0  # no successor before this time (one just failed)
    loaded_rss: int = 0  # resident bytes when first seen ready: what the models alone need

    @property
    def name(self) -> str:
        return f"worker {self.slot} ({self.placement.device})"

    def take(self, pipeline: str) -> None:
        """A task of ``pipeline`` was written to its ring."""
        self.outstanding += 1
        self.outstanding_by[pipeline] = self.outstanding_by.get(pipeline, 0) + 1

    def settle(self, pipeline: str) -> None:
        """A task of ``pipeline`` was answered, or cancelled."""
        self.outstanding -= 1
        self.outstanding_by[pipeline] -= 1


class Supervisor:
    """Owns the worker processes; tells its listener when one comes or goes."""

    def __init__(
        self,
        config: ServerConfig,
        models: list[ModelSpec],
        plan: list[Placement],
        rings: RingSizes,
        log_level: str = "INFO",
        memory_limit: int = 0,
    ) -> None:
        self.config = config
        self.serving = config.engine  # the engine-wide settings
        self.models = tuple(models)
        self.plan = plan
        self.rings = rings
        self.log_level = log_level
        self.memory_limit = memory_limit  # bytes; 0: never recycle
        self.workers: dict[int, WorkerHandle] = {}  # slot -> the worker serving it
        self.successors: dict[int, WorkerHandle] = {}  # slot -> a worker loading to replace it
        self.retiring: list[WorkerHandle] = []  # replaced; finishing what they hold
        self._said_limit_too_low = False
        self.stopping = False
        self.started = False  # every planned worker has loaded the model once
        self._ctx = multiprocess.get_context("spawn")
        self._generation = itertools.count()
        # CPU workers lend each other their cores while idle (shared/core_shares.py).
        cpu = [p for p in plan if p.device.kind == "cpu"]
        self.cores = (
            CoreShares.create(self._ctx, sum(p.cpu_threads for p in cpu), len(plan)) if len(cpu) > 1 else None
        )
        self._startup: asyncio.Future[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Listeners: the engine client (ready, lost) and metrics (batch, restart).
        self.on_ready: Callable[[WorkerHandle], None] = lambda handle: None
        self.on_lost: Callable[[WorkerHandle], None] = lambda handle: None
        self.on_batch: Callable[[dict[str, Any]], None] = lambda stats: None
        self.on_restart: Callable[[], None] = lambda: None
        self.on_recycle: Callable[[], None] = lambda: None

    @property
    def ready_count(self) -> int:
        """Workers that have loaded the model and can take work now."""
        return sum(h.ready for h in self.workers.values())

    @property
    def ready(self) -> bool:
        """Serving: startup finished and at least one worker can take work."""
        return self.started and not self.stopping and self.ready_count > 0

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        """Spawn every planned worker and wait until all have loaded the model."""
        self._loop = asyncio.get_running_loop()
        sweep_stale_rings()
        self._startup = self._loop.create_future()
        started = time.monotonic()
        log.info("starting %d worker(s): %s", len(self.plan), ", ".join(str(p.device) for p in self.plan))
        self._watchdog = self._loop.create_task(self.watch())
        for slot in range(len(self.plan)):
            self.spawn(slot)
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(self._startup), timeout=15.0)
                break
            except TimeoutError:
                log.info("still loading the model: %d of %d workers ready", self.ready_count, len(self.plan))
        self.started = True
        log.info("all %d workers ready in %.1f s", len(self.plan), time.monotonic() - started)

    def all_handles(self) -> list[WorkerHandle]:
        """Every live worker process: serving, loading to take over, retiring."""
        return [*self.workers.values(), *self.successors.values(), *self.retiring]

    def spawn(self, slot: int, successor: bool = False) -> WorkerHandle:
        placement = self.plan[slot]
        serving = self.serving
        tag = f"{RING_PREFIX}{os.getpid()}-{slot}-{next(self._generation)}"
        requests = Ring.create(f"{tag}-req", self.rings.request_bytes)
        responses = Ring.create(f"{tag}-res", self.rings.response_bytes)
        bell, reply = Doorbell.create(), Doorbell.create()
        status_read, status_write = self._ctx.Pipe(duplex=False)
        heartbeat = self._ctx.Value("d", 0.0, lock=False)  # one writer, one reader: no lock
        cancels = CancelBoard.create(self._ctx)
        # A batch, and one of another pipeline run between its model calls.
        in_hand = InHandBoard.create(self._ctx, 2 * serving.max_batch_size)
        spec = WorkerSpec(
            index=slot,
            device=placement.device,
            pipelines=tuple(self.config.pipelines),
            models=self.models,
            cpu_threads=placement.cpu_threads,
            max_batch_size=serving.max_batch_size,
            max_queue_delay_s=placement.max_queue_delay_s,
            max_result_bytes=serving.max_result_bytes,
            request_ring=requests.path.name,
            response_ring=responses.path.name,
            workers=len(self.plan),
            max_pixels=serving.max_pixels,
            heartbeat_interval_s=heartbeat_interval(serving.worker_stall_timeout_s),
            log_level=self.log_level,
            shared_cores=self.cores.cores if self.cores and placement.device.kind == "cpu" else 0,
            max_kept_bytes=kept_memory_limit(serving),
        )
        if self.cores is not None and not successor:
            self.cores.reset(slot)  # a dead predecessor's share is free
        process = self._ctx.Process(
            target=worker_main,
            args=(
                spec,
                bell.reader(),
                reply.writer(),
                status_write,
                heartbeat,
                cancels.shared,
                in_hand.shared,
                self.cores.arrays if self.cores else None,
            ),
            name=f"pxserve-worker-{slot}",
            daemon=True,
        )
        process.start()
        # Keep only our ends, so end-of-file means "the other side is gone".
        status_write.close()
        bell.close_reader()
        reply.close_writer()
        handle = WorkerHandle(
            slot,
            placement,
            process,
            requests,
            responses,
            bell,
            reply,
            status_read,
            heartbeat,
            cancels,
            in_hand,
        )
        (self.successors if successor else self.workers)[slot] = handle
        loop = self._loop or asyncio.get_running_loop()
        loop.add_reader(status_read.fileno(), self._on_status, handle)
        loop.add_reader(process.sentinel, self._on_exit, handle)
        log.debug("spawned %s as pid %s", handle.name, process.pid)
        return handle

    def _on_status(self, handle: WorkerHandle) -> None:
        try:
            event: WorkerEvent = handle.status.recv()
        except (EOFError, OSError):
            self._loop.remove_reader(handle.status.fileno())  # type: ignore[union-attr]
            return
        if event.kind == "batch":
            self.on_batch(event.stats)
        elif event.kind == "ready":
            handle.ready = True
            handle.ready_at = time.monotonic()
            handle.requests.unlink()  # both sides mapped it: a crash now leaks nothing
            handle.responses.unlink()
            log.info(
                "%s ready (pid %s, %.1f s)",
                handle.name,
                handle.process.pid,
                time.monotonic() - handle.started_at,
            )
            if self.successors.get(handle.slot) is handle:
                self._take_over(handle)
            self.on_ready(handle)
            self._check_startup()
        elif event.kind == "failed":
            message = f"{handle.name} could not start: {event.detail}"
            startup = self._startup
            if startup is not None and not startup.done():
                startup.set_exception(StartupError(message))
            elif startup is not None and startup.exception() is None:
                log.error(message)  # a replacement worker failed; it will be retried
            else:
                log.debug(message)  # startup already failed on another worker

    def _check_startup(self) -> None:
        starting = self._startup is not None and not self._startup.done()
        if starting and len(self.workers) == len(self.plan) and all(h.ready for h in self.workers.values()):
            self._startup.set_result(None)  # type: ignore[union-attr]

    def _on_exit(self, handle: WorkerHandle) -> None:
        successor = self.successors.get(handle.slot) is handle
        self.reap(handle)
        if handle.retiring:
            log.info("%s retired (pid %s)", handle.name, handle.process.pid)
            return
        if successor and not self.stopping and handle.slot in self.workers:
            log.error("%s could not start as a successor; the old worker keeps serving", handle.name)
            self.workers[handle.slot].recycle_after = time.monotonic() + RECYCLE_RETRY_S
            return
        if self.stopping or self.workers.get(handle.slot) is not None or handle.slot in self.successors:
            return
        startup = self._startup
        if startup is not None and not startup.done():
            code = handle.process.exitcode
            startup.set_exception(StartupError(f"{handle.name} exited with code {code} while loading"))
        elif startup is not None and startup.exception() is None:
            self.restart(handle)
        # else: startup failed, so the server is stopping rather than healing

    def reap(self, handle: WorkerHandle) -> None:
        """Forget an exited worker: unhook it, fail its tasks, free its rings."""
        if handle.reaped:
            return
        handle.reaped = True
        loop = self._loop
        if loop is not None:
            loop.remove_reader(handle.process.sentinel)
            if not handle.status.closed:
                loop.remove_reader(handle.status.fileno())
        # Its sentinel closes a moment before the kernel has its exit status;
        # the status says whether it crashed, so wait that moment for it.
        handle.process.join(timeout=REAP_WAIT_S)
        if self.workers.get(handle.slot) is handle:
            del self.workers[handle.slot]
        if self.successors.get(handle.slot) is handle:
            del self.successors[handle.slot]
        if handle in self.retiring:
            self.retiring.remove(handle)
        was_ready, handle.ready = handle.ready, False
        if was_ready and not self.stopping and not handle.retiring:
            log.warning("%s exited (code %s)", handle.name, handle.process.exitcode)
        self.on_lost(handle)
        handle.status.close()
        handle.bell.close()
        handle.reply.close()
        for ring in (handle.requests, handle.responses):
            ring.unlink()
            ring.close()

    def restart(self, handle: WorkerHandle) -> None:
        self.on_restart()
        lived = time.monotonic() - handle.started_at
        delay = RESTART_BACKOFF_S if lived < 5.0 else 0.0
        log.info("restarting %s%s", handle.name, f" in {delay:.0f} s" if delay else "")
        assert self._loop is not None
        self._loop.call_later(delay, self._respawn, handle.slot)

    def _respawn(self, slot: int) -> None:
        if not self.stopping and slot not in self.workers and slot not in self.successors:
            self.spawn(slot)

    # -- recycling -----------------------------------------------------------
    def recycle(self, handle: WorkerHandle) -> None:
        """Start ``handle``'s successor; it takes over the slot once it is ready."""
        log.warning(
            "%s uses %.0f MiB, over max_worker_memory_mb (%.0f MiB): starting its successor; "
            "it retires once that is ready and its own work is done",
            handle.name, handle.rss / MiB, self.memory_limit / MiB,
        )  # fmt: skip
        self.spawn(handle.slot, successor=True)

    def _take_over(self, successor: WorkerHandle) -> None:
        """A successor is ready: it serves the slot; the old worker gets no new work."""
        del self.successors[successor.slot]
        old = self.workers.get(successor.slot)
        self.workers[successor.slot] = successor
        if old is None:  # the old one died meanwhile; the successor simply replaces it
            return
        old.retiring = True
        self.retiring.append(old)
        self.on_recycle()
        log.info("%s replaced by pid %s; retiring pid %s", old.name, successor.process.pid, old.process.pid)
        self._release_retired()

    def _release_retired(self) -> None:
        """Tell retiring workers that answered everything to exit (end-of-file on their bell)."""
        for handle in self.retiring:
            if handle.outstanding == 0 and handle.bell.write_fd >= 0:
                handle.bell.close_writer()

    # -- the watchdog ----------------------------------------------------------
    async def watch(self) -> None:
        """Once a second: read each worker's vital signs and act on them."""
        while not self.stopping:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for handle in self.all_handles():
                self._check(handle, now)
            self._release_retired()

    def _check(self, handle: WorkerHandle, now: float) -> None:
        """Kill a hung worker; recycle one that grew too big.

        A worker beats from its main loop and from inside long batches, idle
        or not. Silence alone is not a hang: on a loaded machine one step (a
        page's detection with a cold oneDNN cache) can outlast the stall
        timeout. A worker is hung when it is silent *and* has burned no CPU
        for ``worker_stall_timeout_s`` (deadlocked, stopped, blocked), or
        silent for longer than any request may wait (spinning in native
        code). Killing it turns the stall into an ordinary exit: reap,
        restart, retry.
        """
        pid = handle.process.pid
        cpu = cpu_seconds(pid)
        if cpu - handle.cpu >= BUSY_CPU_S:
            handle.busy_at = now
        handle.cpu = cpu
        handle.rss = rss_bytes(pid)
        if not handle.ready or not handle.process.is_alive():
            return
        if not handle.loaded_rss:
            handle.loaded_rss = handle.rss
            if self.memory_limit and handle.rss > self.memory_limit and not self._said_limit_too_low:
                self._said_limit_too_low = True
                log.warning(
                    "max_worker_memory_mb (%.0f MiB) is below what a freshly loaded worker uses "
                    "(%.0f MiB): workers will be recycled every %.0f s; raise it",
                    self.memory_limit / MiB, handle.rss / MiB, MIN_WORKER_LIFE_S,
                )  # fmt: skip
        serving = self.serving
        limit = serving.worker_stall_timeout_s
        silent = now - handle.heartbeat.value
        idle = now - handle.busy_at
        if silent > limit and idle > limit:
            log.warning(
                "%s sent no heartbeat and used no CPU for %.0f s (holding %d request(s)); killing it",
                handle.name, min(silent, idle), handle.outstanding,
            )  # fmt: skip
            handle.process.kill()
        elif silent > serving.request_timeout_s + limit:
            log.warning(
                "%s sent no heartbeat for %.0f s while busy, longer than any request may wait "
                "(holding %d request(s)); killing it",
                handle.name, silent, handle.outstanding,
            )  # fmt: skip
            handle.process.kill()
        elif (
            self.memory_limit
            and handle.rss > self.memory_limit
            and self.workers.get(handle.slot) is handle
            and not self.successors  # one at a time: each successor is memory on top
            and now >= max(handle.recycle_after, handle.ready_at + MIN_WORKER_LIFE_S)
        ):
            self.recycle(handle)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask every worker to exit (close its doorbell), then make sure."""
        self.stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        handles = self.all_handles()
        for handle in handles:
            handle.bell.close_writer()  # end-of-file: finish the batch in hand, exit
        deadline = time.monotonic() + grace_s
        for handle in handles:
            while handle.process.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if handle.process.is_alive():  # workers ignore SIGTERM: see worker.py
                log.warning("%s did not exit in %.0f s; killing it", handle.name, grace_s)
                handle.process.kill()
                handle.process.join(timeout=2)
        for handle in handles:
            self.reap(handle)


def sweep_stale_rings() -> None:
    """Remove ring files left by a pxserve front that no longer runs."""
    for path in shm_dir().glob(f"{RING_PREFIX}*"):
        try:
            pid = int(path.name[len(RING_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:
            pass  # another user's live process
