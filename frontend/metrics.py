"""Prometheus metrics for the front: HTTP traffic, queue, batches, workers.

Batch sizes and inference times are measured in the workers and reported
once per batch on their status pipes; the front only records them. Traffic,
queue and batches carry a ``pipeline`` label (empty for the server's own
routes), since one server serves several. The text format is
prometheus-client's, served at ``GET /metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from pxserve.frontend.envelope import CLIENT_CLOSED_REQUEST, Handler

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)
SECONDS_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pxserve_requests",
            "HTTP requests by pipeline, route and status",
            ["pipeline", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pxserve_request_duration_seconds", "Time from request to response", ["pipeline", "route"],
            buckets=SECONDS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "pxserve_batch_size", "Tasks (requests, pages, line groups) a worker took as one batch",
            ["pipeline"], buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.model_batch_size = Histogram(
            "pxserve_model_batch_size", "Inputs per inference call, by model (images, pages, text lines)",
            ["model"], buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.model_calls = Counter(
            "pxserve_model_calls",
            "Inference calls by model and the CPU threads each ran on: more than a worker's "
            "cpu_threads when it borrowed idle workers' cores",
            ["model", "threads"], registry=self.registry,
        )  # fmt: skip
        self.inference = Histogram(
            "pxserve_inference_seconds", "Worker time per batch: decode, preprocess, infer, postprocess",
            ["pipeline"], buckets=SECONDS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "pxserve_queue_depth", "Admitted requests not yet answered", ["pipeline"], registry=self.registry
        )
        self.workers_ready = Gauge(
            "pxserve_workers_ready", "Workers that have loaded the model", registry=self.registry
        )
        self.worker_restarts = Counter(
            "pxserve_worker_restarts", "Workers restarted after exiting", registry=self.registry
        )
        self.worker_recycles = Counter(
            "pxserve_worker_recycles",
            "Workers replaced for passing max_worker_memory_mb",
            registry=self.registry,
        )
        self.tasks_dropped = Counter(
            "pxserve_tasks_dropped",
            "Tasks a worker was told to skip: their client left, their deadline passed, or a sibling failed",
            registry=self.registry,
        )
        self.jobs = Gauge(
            "pxserve_jobs",
            "Jobs in the store, by state (all servers sharing it)",
            ["state"],
            registry=self.registry,
        )
        self.jobs_oldest_pending = Gauge(
            "pxserve_jobs_oldest_pending_seconds", "Age of the oldest job still waiting to run (0: none)",
            registry=self.registry,
        )  # fmt: skip
        self.job_pages = Counter(
            "pxserve_job_pages", "Pages read for jobs by this server", registry=self.registry
        )
        self._pipelines: dict[str, str] = {}  # route path -> pipeline name
        self._worker_rss: Callable[[], dict[str, int]] = dict
        self.registry.register(_WorkerMemory(lambda: self._worker_rss()))

    def track_queue(self, depth_by_pipeline: Callable[[], dict[str, int]]) -> None:
        """Admitted requests of each pipeline (the pipelines are fixed at startup)."""
        for name in depth_by_pipeline():
            self.queue_depth.labels(name).set_function(lambda name=name: depth_by_pipeline()[name])

    def pipeline_of_route(self, pipeline_by_path: dict[str, str]) -> None:
        """Which pipeline each inference route serves, for the ``pipeline`` label."""
        self._pipelines = dict(pipeline_by_path)

    def track_workers(self, ready: Callable[[], float]) -> None:
        self.workers_ready.set_function(ready)

    def track_worker_memory(self, rss_by_worker: Callable[[], dict[str, int]]) -> None:
        """Resident bytes of each serving worker, by slot, as the supervisor last read them."""
        self._worker_rss = rss_by_worker

    def track_jobs(self, runner: Any) -> None:
        """The job runner's last census of the store, and its pages read."""
        for state in ("pending", "running", "done", "failed"):
            self.jobs.labels(state).set_function(lambda state=state: runner.counts.get(state, 0))
        self.jobs_oldest_pending.set_function(
            lambda: time.time() - runner.oldest_pending if runner.oldest_pending else 0.0
        )
        runner.on_page = self.job_pages.inc

    def observe_batch(self, stats: dict[str, Any]) -> None:
        """One worker batch: its task count, its time, and each model's inference calls."""
        pipeline = stats.get("pipeline", "")
        self.batch_size.labels(pipeline).observe(stats["size"])
        self.inference.labels(pipeline).observe(stats["seconds"])
        for model, sizes in (stats.get("models") or {}).items():
            histogram = self.model_batch_size.labels(model)
            for size in sizes:
                histogram.observe(size)
        for model, threads in (stats.get("threads") or {}).items():
            for count in threads:
                self.model_calls.labels(model, str(count)).inc()

    def render(self) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = CLIENT_CLOSED_REQUEST  # unless an answer comes: the client left first
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "unmatched"
            pipeline = self._pipelines.get(name, "")
            self.requests.labels(pipeline, name, str(status)).inc()
            self.latency.labels(pipeline, name).observe(time.perf_counter() - started)


class _WorkerMemory:
    """A collector: one gauge sample per worker, read when /metrics is scraped."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "pxserve_worker_rss_bytes", "Resident memory of each worker, by slot", labels=["worker"]
        )
        for worker, rss in sorted(self._read().items()):
            family.add_metric([worker], rss)
        yield family
