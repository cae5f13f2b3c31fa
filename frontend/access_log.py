"""One access-log line per request, carrying the logId the client sees."""

from __future__ import annotations

import logging
import time
import uuid

from aiohttp import web

from pxserve.frontend.envelope import CLIENT_CLOSED_REQUEST, LOG_ID, Handler

log = logging.getLogger("pxserve.access")


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[LOG_ID] = log_id = str(uuid.uuid4())
    started = time.perf_counter()
    status = CLIENT_CLOSED_REQUEST  # unless an answer comes: the client hung up, its handler was cancelled
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        log.info(
            '%s "%s %s" %d %.1fms logId=%s',
            request.remote, request.method, request.path, status,
            (time.perf_counter() - started) * 1e3, log_id,
        )  # fmt: skip
