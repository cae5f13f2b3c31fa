"""PaddleX's response envelope, and the middleware that puts every answer in it.

Success: ``{"logId", "errorCode": 0, "errorMsg": "Success", "result"}``.
Failure: ``errorCode`` equals the HTTP status and ``errorMsg`` says why; no
``result``. Every response, including 404s, 413s and unexpected errors,
leaves through :func:`envelope_middleware`, so no client ever sees a bare
aiohttp error page or a traceback.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from pxserve.shared.errors import RequestError

log = logging.getLogger("pxserve.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOG_ID = "pxserve.log_id"
# nginx's status for "the client closed the connection before the answer";
# only logs and metrics ever see it.
CLIENT_CLOSED_REQUEST = 499
MAX_BODY = web.AppKey("max_body_bytes", int)
RETRY_AFTER_S = 1  # what a 503 tells clients to wait
JSON = "application/json"

_REASONS = {
    404: "Not Found: no such route",
    405: "Method Not Allowed",
    413: "Request body is too large",
}


def success(log_id: str, result_json: bytes) -> web.Response:
    """Wrap an already-serialized ``result`` without parsing it again."""
    head = orjson.dumps({"logId": log_id, "errorCode": 0, "errorMsg": "Success"})
    return web.Response(body=head[:-1] + b',"result":' + result_json + b"}", content_type=JSON)


def failure(log_id: str, status: int, message: str) -> web.Response:
    body = orjson.dumps({"logId": log_id, "errorCode": status, "errorMsg": message})
    response = web.Response(status=status, body=body, content_type=JSON)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    elif status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def message(log_id: str, status: int, text: str) -> web.Response:
    """An envelope with no result, e.g. /health's ``Healthy``."""
    body = orjson.dumps({"logId": log_id, "errorCode": 0 if status == 200 else status, "errorMsg": text})
    return web.Response(status=status, body=body, content_type=JSON)


def log_id_of(request: web.Request) -> str:
    return request.get(LOG_ID) or str(uuid.uuid4())


def adopt_log_id(request: web.Request, body: dict) -> None:
    """PaddleX clients may send their own ``logId``; the answer carries it back."""
    log_id = body.get("logId")
    if isinstance(log_id, str) and 0 < len(log_id) <= 256:
        request[LOG_ID] = log_id


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[LOG_ID] = log_id_of(request)
    try:
        return await handler(request)
    except RequestError as exc:
        return failure(request[LOG_ID], exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = _REASONS.get(exc.status, exc.reason)
        if exc.status == 413 and MAX_BODY in request.app:
            text = f"Request body is larger than the limit of {request.app[MAX_BODY]} bytes"
        response = failure(request[LOG_ID], exc.status, text)
        if "Allow" in exc.headers:  # 405 must say which methods the route takes
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log_id = request[LOG_ID]
        log.exception("unhandled error for %s %s (logId %s)", request.method, request.path, log_id)
        return failure(log_id, 500, "Internal server error")
