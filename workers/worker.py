"""The worker process: take tasks from its ring, batch, run, answer.

One worker serves one device, and every pipeline the server serves: it
holds all their models (a model two pipelines name with the same directory
and engine is loaded once), so no core idles while one pipeline is busy.

It blocks in ``select`` on its doorbell when idle (no spinning; it wakes
only to beat its heartbeat), reads whatever is waiting into one queue per
pipeline (workers/task_queues.py), and takes a batch of at most
``max_batch_size`` tasks of one pipeline, the pipelines in turn (waiting up
to ``max_queue_delay`` for more when the batch is not full). Between the
model calls of a long batch (runners call ``beat``) it runs one batch of
another pipeline that has work waiting, so a flood on OCR delays a
classification request by about one OCR model call, not by OCR's queue.
Outcomes go to the response ring, in pieces when larger than one ring
record. Tasks the front has cancelled (shared/task_boards.py) are skipped,
and a task marked ``solo`` runs in a batch of its own.

On a CPU it tells the other CPU workers, through shared/core_shares.py,
whether it is using its cores: while it waits for work they are theirs to
borrow for a model call, and its own calls borrow theirs the same way.

The front stops a worker by closing the request doorbell: the worker sees
end-of-file, finishes what it holds and exits. If the front dies, the
same end-of-file arrives, so no worker outlives it.
"""

from __future__ import annotations

import io
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pxserve.shared.allocator import return_free_heap, return_large_buffers_to_the_os
from pxserve.shared.config import PipelineConfig
from pxserve.shared.core_shares import Cores, CoreShares, OwnCores
from pxserve.shared.devices import Device
from pxserve.shared.errors import one_line
from pxserve.shared.logs import quiet_engine_logs
from pxserve.shared.messages import Outcome, Task, WorkerEvent
from pxserve.shared.process_stats import rss_bytes
from pxserve.shared.ring import Doorbell, Ring, RingFullError
from pxserve.shared.task_boards import CancelBoard, InHandBoard
from pxserve.workers.task_queues import TaskQueues

if TYPE_CHECKING:
    from pxserve.shared.pipelines import Runner

log = logging.getLogger("pxserve.worker")


@dataclass(frozen=True)
class ModelSpec:
    """One of the pipeline's models: where it is and which engine runs it."""

    key: str  # its SubModules key, namespaced for a sub-pipeline's ("GeneralOCR/TextDetection")
    model_dir: str
    engine: str  # "paddle", "onnxruntime" or "tensorrt"
    onnx_path: str | None = None
    pipeline: str = ""  # the served pipeline that needs it

    @property
    def identity(self) -> tuple[str, str, str | None]:
        """Models with the same identity are loaded once per worker, whoever needs them."""
        return (os.path.realpath(self.model_dir), self.engine, self.onnx_path)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, sent once at spawn (small; no image data)."""

    index: int
    device: Device
    pipelines: tuple[PipelineConfig, ...]  # every served pipeline, in the server's order
    models: tuple[ModelSpec, ...]
    cpu_threads: int
    max_batch_size: int
    max_queue_delay_s: float
    request_ring: str
    response_ring: str
    max_result_bytes: int = 256 << 20
    workers: int = 1  # how many workers serve this pipeline (how wide a fan-out can usefully go)
    max_pixels: int = 64_000_000  # the most any pipeline allows; a backstop for Pillow
    heartbeat_interval_s: float = 1.0
    log_level: str = "INFO"
    # The CPU cores this worker shares with the other CPU workers (0: it shares none):
    # its model calls may use those the others leave idle (shared/core_shares.py).
    shared_cores: int = 0
    # What the worker may keep between batches above its size at rest (Serving.max_kept_mb;
    # the front resolves its auto).
    max_kept_bytes: int = 1536 << 20


# What a worker's last batches kept for the next ones (each model's memory for its last
# large shape, the heap's free pages) goes back once no worker has had work for this
# long, as seen by this one every SETTLE_POLL_S, so a lone request's pages, whose parts
# move between workers, keep theirs; or once it has itself waited SETTLE_ALONE_S while
# others work. Measured with benchmarks/memory_at_rest.py: giving back whenever one worker
# had waited 0.5 s cost a lone A4 page 7% at c=1 (one exploratory run), after every batch
# (max_kept_mb: 0) 2-11% with ONNX Runtime and 5-20% with Paddle (docs/performance.md, "Memory at rest").
SETTLE_QUIET_S = 0.5
SETTLE_POLL_S = 0.1
SETTLE_ALONE_S = 5.0


def _prepare_process(spec: WorkerSpec) -> None:
    """Environment that must be set before any engine is imported."""
    _ignore_stop_signals()
    if any(model.engine == "paddle" for model in spec.models):
        # Paddle's allocator frees a page's tensors into glibc's heap, which then keeps
        # them: a fixed 1 MiB mmap threshold gives them back (peak 2.2 -> 1.7 GB a
        # worker on the A4 page). ONNX Runtime's arena does not need it (0.62 GB either
        # way), and there it would cost every request its large buffers' page faults:
        # 8% of a 12-MP photo's classification (benchmarks/ab_commits.py).
        return_large_buffers_to_the_os()
    if spec.device.kind == "gpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = str(spec.device.index)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(spec.cpu_threads)
    quiet_engine_logs()
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = spec.max_pixels  # the front checked; this is a backstop
    logging.basicConfig(
        level=spec.log_level,
        format=f"%(asctime)s %(levelname)s [worker {spec.index} {spec.device}] %(message)s",
        stream=sys.stderr,
    )


def _ignore_stop_signals() -> None:
    """Ctrl-C and SIGTERM sent to the whole process group are the front's to act
    on: it drains, then closes our doorbell. Paddle installs a noisy SIGTERM
    handler on import, so this runs again once the engine is loaded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Worker:
    def __init__(
        self,
        spec: WorkerSpec,
        requests: Ring,
        responses: Ring,
        bell: Doorbell,
        reply: Doorbell,
        status: Any,
        heartbeat: Any,
        cancels: CancelBoard,
        in_hand: InHandBoard,
        cores: Cores | None = None,
    ) -> None:
        from pxserve.shared.model_dir import ModelDir
        from pxserve.shared.pipelines import LoadedModel, RunnerContext, get_pipeline
        from pxserve.workers.backends import BackendOptions, MeteredBackend, create_backend
        from pxserve.workers.composed_runner import build_runner

        self.spec = spec
        self.requests = requests
        self.responses = responses
        self.bell = bell
        self.reply = reply
        self.status = status  # lifecycle and per-batch statistics for the front
        self.heartbeat = heartbeat  # shared double the front's watchdog reads
        self.cancels = cancels
        self.in_hand = in_hand  # what we are running, for the front to read if we crash
        self.cores = cores or OwnCores(spec.cpu_threads)  # the threads each model call may use
        self.backends: list[MeteredBackend] = []
        loaded: dict[tuple[str, str, str | None], LoadedModel] = {}
        context = RunnerContext(spec.workers, self.checkpoint, self.cancels.is_cancelled)
        self.runners: dict[str, Runner] = {}
        for config in spec.pipelines:
            models: dict[str, LoadedModel] = {}
            for ref in (m for m in spec.models if m.pipeline == config.pipeline_name):
                if ref.identity not in loaded:
                    model = ModelDir.load(ref.model_dir)
                    options = BackendOptions(
                        spec.device, spec.cpu_threads, ref.engine, ref.onnx_path, self.cores.counts
                    )
                    backend = MeteredBackend(create_backend(model, options), model.model_name, self.cores)
                    log.info("loaded %s on %s with %s", model.model_name, spec.device, backend.name)
                    self.backends.append(backend)
                    loaded[ref.identity] = LoadedModel(model, backend, spec.device)
                models[ref.key] = loaded[ref.identity]
            self.runners[config.pipeline_name] = build_runner(get_pipeline(config), models, context)
        self.queues = TaskQueues(list(self.runners), max_bytes=requests.capacity)
        self.running: list[tuple[str, list[int]]] = []  # (pipeline, task ids): the batch, and one inside it
        self.running_background = False  # the outer batch is only background tasks (a job's)
        self.holding = False  # batches ran since the worker last gave back what they kept
        self.rest_bytes = 0  # resident memory right after it last gave it back
        self.pid = os.getpid()
        self.front_alive = True

    def beat(self) -> None:
        """Tell the front's watchdog this loop is still turning."""
        self.heartbeat.value = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process

    def warm_up(self) -> None:
        """Run the largest and the smallest batch once before saying ready.

        Engines that build or tune kernels per shape (TensorRT, oneDNN) do it
        now rather than on a client's request, and a model that loads but
        cannot run stops the server at startup instead of failing every request.
        """
        from pxserve.workers.composed_runner import warm_up

        probe = _probe_image()
        for name, runner in self.runners.items():
            try:
                warm_up(runner, probe, sorted({self.spec.max_batch_size, 1}, reverse=True))
            except RuntimeError as exc:
                raise RuntimeError(f"pipeline {name}: {exc}") from None
        for backend in self.backends:
            backend.take_batch_sizes()
            backend.take_threads()
        self.settle()

    def _wait(self, timeout: float | None) -> None:
        """Sleep until the doorbell rings or ``timeout`` passes."""
        readable, _, _ = select.select([self.bell.read_fd], [], [], timeout)
        if readable and not self.bell.drain():
            self.front_alive = False

    def read_ring(self) -> None:
        """Move the tasks waiting in the ring into their pipelines' queues, while they have room."""
        while self.queues.has_room and (record := self.requests.get()) is not None:
            task = Task.parse(record)
            if not self.queues.add(task):
                self.answer([Outcome.failure(task.request_id, 500, f"no pipeline {task.pipeline!r} here")])

    def next_batch(self) -> tuple[str, list[Task]]:
        """Block until a task is waiting, then gather a batch of its pipeline (the pipelines in turn).

        Returns ("", []) once the front has closed the doorbell and nothing is left.
        """
        idle_since = quiet_since = time.monotonic()  # this worker waiting; no worker at work
        while True:
            self.beat()
            self.read_ring()
            pipeline = self.queues.next_pipeline()
            if pipeline is not None:
                break
            if not self.front_alive:
                return "", []
            self.cores.let_go()  # nothing to do: the others may use our cores
            if self.holding:
                now = time.monotonic()
                if self.cores.others_at_work():
                    quiet_since = now
                if now - quiet_since >= SETTLE_QUIET_S or now - idle_since >= SETTLE_ALONE_S:
                    self.settle()
            self._wait(SETTLE_POLL_S if self.holding else self.spec.heartbeat_interval_s)
        self.cores.hold()
        self.holding = True
        deadline = time.monotonic() + self.spec.max_queue_delay_s
        while (
            self.front_alive
            and self.queues.waiting(pipeline) < self.spec.max_batch_size
            and not self.queues.head_is_solo(pipeline)
            and (remaining := deadline - time.monotonic()) > 0
        ):
            self._wait(remaining)
            self.read_ring()
        return pipeline, self.queues.take(pipeline, self.spec.max_batch_size)

    def settle(self, why: str = "idle") -> None:
        """Give back what the last batches kept for the next ones: each model's memory for its
        last large shape, then the heap's free pages."""
        before, started = rss_bytes(self.pid), time.perf_counter()
        for backend in self.backends:
            backend.release()
        return_free_heap()
        self.holding = False
        self.rest_bytes = rss_bytes(self.pid)
        log.debug(
            "gave back %.0f MiB in %.0f ms (%s)",
            (before - self.rest_bytes) / 2**20,
            (time.perf_counter() - started) * 1e3,
            why,
        )

    def settle_if_over(self) -> None:
        """After a batch: give back at once what it left kept, when that is over the limit."""
        if rss_bytes(self.pid) - self.rest_bytes > self.spec.max_kept_bytes:
            self.settle("over max_kept_mb")

    def checkpoint(self) -> None:
        """Between a batch's model calls: beat, and run one waiting batch of another pipeline.

        Only one level deep: a batch run here does not run others inside it.
        """
        self.beat()
        if len(self.running) != 1:
            return
        self.read_ring()
        pipeline = self.running[0][0]
        if self.running_background:
            if self.queues.foreground(pipeline):
                # A request's tasks wait for one model call of a job's batch, not for the whole batch.
                self.run_batch(pipeline, self.queues.take(pipeline, self.spec.max_batch_size))
                return
            self.cores.give_way(self.beat)  # other workers' requests take this worker's cores too
        other = self.queues.next_pipeline(besides=pipeline)
        if other is not None:
            self.run_batch(other, self.queues.take(other, self.spec.max_batch_size))

    def answer(self, outcomes: list[Outcome]) -> None:
        """Write each outcome; one larger than a ring record goes in pieces."""
        limit = self.spec.max_result_bytes
        for outcome in outcomes:
            if len(outcome.body) > limit:
                outcome = Outcome.failure(
                    outcome.request_id,
                    413,
                    f"the result is {len(outcome.body) / 2**20:.0f} MiB, over the server's limit of "
                    f"{limit / 2**20:.0f} MiB (Serving.max_result_mb); ask for fewer pages or "
                    "leave visualize off",
                )
            pieces = outcome.pieces(self.responses.max_payload())
            for number, piece in enumerate(pieces, 1):
                self._put(piece)
                # Wake the front after each piece, so it drains the ring while the next is written.
                if number < len(pieces) and not self.reply.ring():
                    self.front_alive = False
                if not self.front_alive:
                    return
        if not self.reply.ring():
            self.front_alive = False

    def _put(self, record: tuple[bytes, bytes | memoryview]) -> None:
        while True:
            try:
                self.responses.put(record)
                return
            except RingFullError:
                # The front drains continuously; only a stalled front, or
                # the pieces of a large result, get here.
                if not self.reply.ring():
                    self.front_alive = False  # nobody will read it: stop after this batch
                    return
                time.sleep(0.001)
                self.beat()

    def skip_cancelled(self, batch: list[Task]) -> list[Task]:
        """Answer the tasks nobody waits for any more as dropped; keep the rest."""
        cancelled = [self.cancels.is_cancelled(t.request_id) for t in batch]
        if any(cancelled):
            self.answer([Outcome.dropped(t.request_id) for t, c in zip(batch, cancelled, strict=True) if c])
        return [t for t, c in zip(batch, cancelled, strict=True) if not c]

    def hold_running(self) -> None:
        """Publish the ids of every batch now running (one, or one inside another) for the front."""
        self.in_hand.hold([i for _, ids in self.running for i in ids])

    def run_batch(self, pipeline: str, batch: list[Task]) -> None:
        """Run one batch of one pipeline and answer every task in it."""
        batch = self.skip_cancelled(batch)
        if not batch:
            return
        started = time.perf_counter()
        background = all(t.background for t in batch)
        if not self.running:
            self.running_background = background
        self.cores.serving_requests(not background)
        self.running.append((pipeline, [t.request_id for t in batch]))
        self.hold_running()
        try:
            outcomes = self.runners[pipeline].run(batch)
        except Exception:
            log.exception("%s: batch of %d failed", pipeline, len(batch))
            outcomes = [Outcome.failure(t.request_id, 500, "inference failed") for t in batch]
        seconds = time.perf_counter() - started
        log.debug("%s: batch size %d in %.1f ms", pipeline, len(batch), seconds * 1e3)
        self.answer(outcomes)
        self.running.pop()
        self.cores.serving_requests(bool(self.running) and not self.running_background)
        self.hold_running()
        del outcomes
        stats = {
            "pipeline": pipeline,
            "size": len(batch),
            "seconds": seconds,
            "models": {b.model_name: b.take_batch_sizes() for b in self.backends},
            "threads": {b.model_name: b.take_threads() for b in self.backends},
        }
        self.status.send(WorkerEvent("batch", self.spec.index, stats=stats))
        if not self.running:
            self.settle_if_over()

    def serve(self) -> None:
        while True:
            pipeline, batch = self.next_batch()
            if not batch:
                return  # front closed our doorbell and nothing is left: shut down
            self.run_batch(pipeline, batch)


def _probe_image() -> bytes:
    """A small grey PNG for the warm-up run."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def worker_main(
    spec: WorkerSpec,
    bell: Doorbell,
    reply: Doorbell,
    status: Any,
    heartbeat: Any,
    cancels: Any,
    in_hand: Any,
    core_shares: Any = None,
) -> int:
    """Process entry point (spawned by the supervisor)."""
    _prepare_process(spec)
    requests = Ring.attach(spec.request_ring)
    responses = Ring.attach(spec.response_ring)
    cores: Cores = OwnCores(spec.cpu_threads)
    if core_shares is not None and spec.shared_cores:
        cores = CoreShares(spec.shared_cores, *core_shares).worker(spec.index, spec.cpu_threads)
    try:
        boards = CancelBoard(cancels), InHandBoard(in_hand)
        worker = Worker(spec, requests, responses, bell, reply, status, heartbeat, *boards, cores)
        worker.warm_up()
    except Exception as exc:  # report why, in one line, to the front
        log.debug("startup failed", exc_info=True)
        status.send(WorkerEvent("failed", spec.index, one_line(exc)))
        return 1
    _ignore_stop_signals()
    worker.beat()  # before "ready": the watchdog starts counting from it
    status.send(WorkerEvent("ready", spec.index))
    try:
        worker.serve()
    finally:
        requests.close()
        responses.close()
    return 0
