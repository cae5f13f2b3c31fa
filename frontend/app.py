"""The aiohttp application: routes, middlewares and the request handlers.

Every served pipeline has its PaddleX route, each with its own limits
(:class:`Route`); /health, /livez, /metrics, /openapi.json and the API
page at /docs (frontend/docs_page.py) cover them all. Handlers only
validate and await; all image work happens in workers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
from aiohttp import web
from pydantic import ValidationError

from pxserve.frontend.access_log import access_log_middleware
from pxserve.frontend.auth import auth_middleware, load_api_keys
from pxserve.frontend.docs_page import ASSETS_PREFIX, PAGE, add_docs_routes
from pxserve.frontend.engine_client import EngineClient, Reading
from pxserve.frontend.envelope import (
    MAX_BODY,
    adopt_log_id,
    envelope_middleware,
    failure,
    log_id_of,
    message,
    success,
)
from pxserve.frontend.file_store import FILES, FileStore, add_file_routes, public_base
from pxserve.frontend.file_store import PREFIX as FILES_PREFIX
from pxserve.frontend.jobs.files import PREFIX as JOB_FILES_PREFIX
from pxserve.frontend.jobs.routes import add_job_routes, job_envelope_middleware
from pxserve.frontend.jobs.runner import JobPipeline
from pxserve.frontend.metrics import Metrics
from pxserve.frontend.openapi import openapi_document
from pxserve.frontend.page_answers import (
    answer_document,
    end_streams_on_shutdown,
    note_dropped,
    stream_pages,
    wanted_document,
    wants_stream,
)
from pxserve.frontend.url_fetch import UrlFetcher
from pxserve.shared.config import ServingSettings, describe_validation_error
from pxserve.shared.errors import RequestError
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.pipelines import Pipeline


@dataclass(frozen=True)
class Route:
    """One served pipeline as the front needs it: its validator and parser, limits and inputs."""

    pipeline: Pipeline
    images: ImageLoader

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def serving(self) -> ServingSettings:
        return self.pipeline.config.Serving

    async def present(self, request: web.Request, result_json: bytes) -> bytes:
        """A result as the client gets it: with ``return_urls``, its files written out and named
        by URL (frontend/file_store.py); else as the worker made it."""
        if not self.serving.urls_for_files:
            return result_json
        store, base = request.app[FILES], public_base(request, request.app[SERVING])
        result = await asyncio.to_thread(store.put_answer, orjson.loads(result_json), base)
        return orjson.dumps(result)


ROUTES = web.AppKey("routes", dict)  # path -> Route
SERVING = web.AppKey("serving", ServingSettings)  # the engine-wide settings
ENGINE = web.AppKey("engine", EngineClient)
METRICS = web.AppKey("metrics", Metrics)
OPENAPI = web.AppKey("openapi", bytes)


async def health(request: web.Request) -> web.Response:
    """PaddleX's body when ready; 503 until every worker has loaded the model."""
    supervisor = request.app[ENGINE].supervisor
    if supervisor.ready:  # every worker holds every pipeline's models
        return message(log_id_of(request), 200, "Healthy")
    loaded = f"{supervisor.ready_count} of {len(supervisor.plan)}"
    return failure(log_id_of(request), 503, f"Not ready: {loaded} workers loaded")


async def live(request: web.Request) -> web.Response:
    """Liveness: 200 whenever the event loop answers, loading or busy.

    For orchestrators' liveness probes, which must not kill a server that is
    still loading its models (/health is 503 then) or busy with requests.
    Stuck workers are the supervisor's watchdog's job, not the probe's.
    """
    return message(log_id_of(request), 200, "Alive")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    return request.app[METRICS].render()


async def infer(request: web.Request) -> web.StreamResponse:
    """A pipeline's route: JSON in, PaddleX's envelope out; or NDJSON page by page, or a whole
    document in a format the pipeline offers, if the Accept header asks for it."""
    route: Route = request.app[ROUTES][request.match_info.route.resource.canonical]
    pipeline, engine = route.pipeline, request.app[ENGINE]
    document = wanted_document(request, pipeline) if pipeline.pages_field else None
    streamed = bool(pipeline.pages_field) and not document and wants_stream(request)
    async with engine.admission(route.name) as deadline:  # 503 before reading, parsing or fetching anything
        data = await receive_json(request, deadline, route.serving.max_body_bytes)
        adopt_log_id(request, data)
        try:
            validated = pipeline.request_model.model_validate(data)
        except ValidationError as exc:
            raise RequestError(422, describe_validation_error(exc)) from None
        task = await pipeline.parse(validated, route.images)
        if document:
            return await answer_document(request, pipeline, engine, task, deadline, document)
        if streamed:
            return await stream_pages(request, pipeline, engine, task, deadline, route.present)
        reading = Reading()
        outcome = await engine.submit(route.name, task, deadline, reading)
    if not outcome.ok:
        return failure(log_id_of(request), outcome.status, outcome.message)
    response = success(log_id_of(request), await route.present(request, outcome.body))
    note_dropped(request, response, reading, "max_pdf_pages")
    return response


async def receive_json(request: web.Request, deadline: float, max_bytes: int) -> dict:
    """The body as a JSON object; a client too slow to send it gets 408, so it
    cannot hold its place in the queue past the request deadline. The
    server-wide body limit is the largest any route allows; ``max_bytes``
    is this route's own."""
    too_large = RequestError(413, f"Request body is larger than the limit of {max_bytes} bytes")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    try:
        async with asyncio.timeout_at(deadline):
            body = await request.read()
    except TimeoutError:
        raise RequestError(408, "request body not received within the request deadline") from None
    except ConnectionResetError:  # nobody will read this answer; it is for the access log
        raise RequestError(400, "client closed the connection before sending the whole body") from None
    if len(body) > max_bytes:
        raise too_large
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(422, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(422, "request body must be a JSON object")
    return data


def open_paths(serving: ServingSettings) -> set[str]:
    """Routes that need no API key, as configured."""
    paths = {"/openapi.json", "/livez", "/", PAGE}
    if not serving.auth_health:
        paths.add("/health")
    if not serving.auth_metrics:
        paths.add("/metrics")
    return paths


class RouteConflictError(ValueError):
    """Two pipelines want the same HTTP path."""


def plan_routes(pipelines: list[Pipeline]) -> dict[str, Pipeline]:
    """Path -> pipeline; a path two pipelines want is a one-line startup error."""
    routes: dict[str, Pipeline] = {}
    for pipeline in pipelines:
        taken = routes.get(pipeline.route)
        if taken is not None:
            raise RouteConflictError(
                f"route {pipeline.route} is served twice: by {taken.name} ({taken.config.source}) and by "
                f"{pipeline.name} ({pipeline.config.source}); serve each pipeline once"
            )
        routes[pipeline.route] = pipeline
    return routes


def create_app(
    pipelines: list[Pipeline],
    serving: ServingSettings,
    engine: EngineClient,
    telemetry: Metrics,
    drain_grace_s: float = 30.0,
) -> web.Application:
    """``serving``: the engine-wide settings (keys, auth, the largest body any route takes);
    ``drain_grace_s``: how long requests in flight may still run once the server stops."""
    keys = load_api_keys(serving)
    app = web.Application(
        client_max_size=serving.max_body_bytes,
        # Outermost first: the access log sees everything, metrics the final status.
        middlewares=[
            access_log_middleware,
            telemetry.middleware,
            envelope_middleware,
            job_envelope_middleware,
            auth_middleware(keys, open_paths(serving), (ASSETS_PREFIX, FILES_PREFIX, JOB_FILES_PREFIX)),
        ],
    )
    routes: dict[str, Route] = {}
    for path, pipeline in plan_routes(pipelines).items():
        own = pipeline.config.Serving
        fetcher = UrlFetcher(own.url_inputs) if own.url_inputs.enabled else None
        routes[path] = Route(pipeline, ImageLoader(own, fetcher))
    app[ROUTES] = routes
    app[SERVING] = serving
    if any(route.serving.urls_for_files for route in routes.values()):
        store = FileStore.of(serving)
        store.open()
        add_file_routes(app, store)
    telemetry.pipeline_of_route({path: route.name for path, route in routes.items()})
    app[ENGINE] = engine
    app[METRICS] = telemetry
    app[MAX_BODY] = serving.max_body_bytes
    end_streams_on_shutdown(app, drain_grace_s)
    jobs = add_job_routes(
        app, serving, engine, {r.name: JobPipeline(r.pipeline, r.images) for r in routes.values()}
    )
    if jobs is not None:
        telemetry.track_jobs(jobs.runner)
    document = openapi_document(pipelines, serving, secured=bool(keys), jobs=jobs is not None)
    app[OPENAPI] = orjson.dumps(document)
    app.router.add_get("/health", health)
    app.router.add_get("/livez", live)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    add_docs_routes(app, f"pxserve: {', '.join(p.name for p in pipelines)}")
    for path in routes:
        app.router.add_post(path, infer)
    return app
