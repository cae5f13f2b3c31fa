"""Optional API keys, sent as ``Authorization: Bearer <key>``.

Keys come from ``Serving.api_keys`` and the ``PXSERVE_API_KEYS`` environment
variable (comma-separated); with none, the server is open. Every key is
compared in constant time, and all of them are always compared, so timing
says nothing about which key, or how much of one, was right. A refusal is
401 with no detail.
"""

from __future__ import annotations

import hmac
import os

from aiohttp import web

from pxserve.frontend.envelope import Handler
from pxserve.shared.config import ServingSettings
from pxserve.shared.errors import RequestError

ENV_VAR = "PXSERVE_API_KEYS"


def load_api_keys(serving: ServingSettings) -> list[bytes]:
    from_env = [k.strip() for k in os.environ.get(ENV_VAR, "").split(",")]
    return [k.encode() for k in [*serving.api_keys, *from_env] if k]


def authorized(header: str, keys: list[bytes]) -> bool:
    scheme, _, token = header.partition(" ")
    presented = token.strip().encode()
    match = False
    for key in keys:
        match |= hmac.compare_digest(presented, key)
    return scheme.lower() == "bearer" and match


def auth_middleware(
    keys: list[bytes], open_paths: set[str], open_prefixes: tuple[str, ...] = ()
) -> web.middleware:
    """Refuse requests without a valid key, except to ``open_paths`` and paths under ``open_prefixes``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            keys
            and request.path not in open_paths
            and not request.path.startswith(open_prefixes)
            and not authorized(request.headers.get("Authorization", ""), keys)
        ):
            raise RequestError(401, "Unauthorized")
        return await handler(request)

    return middleware
