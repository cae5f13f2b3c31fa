"""Prometheus metrics for the front: HTTP traffic, queue, batches, workers.

Batch sizes and inference times are measured in the workers and reported
once per batch on their status pipes; the front only records them. The
text format is prometheus-client's, served at ``GET /metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from pxserve.frontend.envelope import Handler

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)
SECONDS_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pxserve_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pxserve_request_duration_seconds", "Time from request to response", ["route"],
            buckets=SECONDS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "pxserve_batch_size", "Requests merged into one inference batch", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.inference = Histogram(
            "pxserve_inference_seconds", "Worker time per batch: decode, preprocess, infer, postprocess",
            buckets=SECONDS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "pxserve_queue_depth", "Admitted requests not yet answered", registry=self.registry
        )
        self.workers_ready = Gauge(
            "pxserve_workers_ready", "Workers that have loaded the model", registry=self.registry
        )
        self.worker_restarts = Counter(
            "pxserve_worker_restarts", "Workers restarted after exiting", registry=self.registry
        )

    def track_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def track_workers(self, ready: Callable[[], float]) -> None:
        self.workers_ready.set_function(ready)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def render(self) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        self.requests.labels(name, str(response.status)).inc()
        self.latency.labels(name).observe(time.perf_counter() - started)
        return response
