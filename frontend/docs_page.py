"""The interactive API page at /docs: Swagger UI over /openapi.json, served from the server itself.

Swagger UI's files come from the ``swagger-ui-py`` wheel (only its static
assets are used), so the page never fetches anything from the internet;
its Content-Security-Policy says so to the browser too. "Try it out" sends
requests to this server; when API keys are on, the page's Authorize button
takes one and every request from the page carries it. The page and its
assets need no key (they hold nothing secret), like /openapi.json.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

from aiohttp import web

from pxserve.frontend.envelope import failure, log_id_of

PAGE = "/docs"
ASSETS_PREFIX = "/docs/static/"
# The assets the page uses; nothing else of the package is served.
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")
# Everything from this server, nothing from anywhere else (Swagger UI draws its icons as data: URLs).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'self'"
)
TITLE = web.AppKey("docs_title", str)

# Relative URLs, so the page also works behind a proxy that serves pxserve under a path prefix.
_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" sizes="32x32" href="docs/static/favicon-32x32.png">
  <link rel="icon" type="image/png" sizes="16x16" href="docs/static/favicon-16x16.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      displayRequestDuration: true,
      validatorUrl: null
    }});
  </script>
</body>
</html>
"""


def assets_dir() -> Path:
    """Swagger UI's files in the installed ``swagger-ui-py`` package (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed; reinstall pxserve")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


async def docs(request: web.Request) -> web.Response:
    body = _HTML.format(title=html.escape(request.app[TITLE]))
    return web.Response(text=body, content_type="text/html", headers={"Content-Security-Policy": CSP})


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    if name not in ASSETS:
        return failure(log_id_of(request), 404, "Not Found: no such route")
    response = web.FileResponse(assets_dir() / name)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


async def home(request: web.Request) -> web.Response:
    """A person who opens the server in a browser lands on the API page."""
    raise web.HTTPFound("docs")


def add_docs_routes(app: web.Application, title: str) -> None:
    app[TITLE] = title
    app.router.add_get("/", home)
    app.router.add_get(PAGE, docs)
    app.router.add_get(ASSETS_PREFIX + "{asset}", asset)
