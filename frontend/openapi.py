"""The server's OpenAPI 3.1 document, built from the models that validate it.

Request and result schemas come from the pipeline's pydantic models, so the
document cannot drift from what the handlers accept and return. Responses
list every status the server can give on each route.
"""

from __future__ import annotations

from typing import Any

from pxserve import __version__
from pxserve.frontend.jobs.openapi import job_paths
from pxserve.shared.config import ServingSettings
from pxserve.shared.pipelines import Pipeline

REF = "#/components/schemas/{model}"


def _envelope(result: dict[str, Any] | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "logId": {"type": "string"},
        "errorCode": {"type": "integer"},
        "errorMsg": {"type": "string"},
    }
    if result is not None:
        properties["result"] = result
    return {"type": "object", "properties": properties, "required": list(properties)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/ErrorEnvelope"}, description)


def openapi_document(
    pipelines: list[Pipeline], serving: ServingSettings, secured: bool, jobs: bool = False
) -> dict[str, Any]:
    """One document for every served pipeline's route and the server's own routes (and the job
    API's, when it is served)."""
    schemas: dict[str, Any] = {"ErrorEnvelope": _envelope()}
    unauthorized = {"401": _error("Missing or wrong API key")} if secured else {}

    def guarded(open_route: bool) -> dict[str, Any]:
        return {} if open_route or not secured else {"security": [{"bearer": []}]}

    inference_paths: dict[str, Any] = {}
    for pipeline in pipelines:
        for model in (pipeline.request_model, pipeline.result_model):
            schema = model.model_json_schema(ref_template=REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        inference_paths[pipeline.route] = _inference(pipeline, unauthorized, guarded(False))
    names = ", ".join(p.name for p in pipelines)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": f"pxserve: {names}", "version": __version__},
        "paths": {
            **_server_paths(serving, unauthorized, guarded),
            **inference_paths,
            **(job_paths(secured) if jobs else {}),
        },
        "components": {"schemas": schemas},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return document


PAGES_HEADERS = {
    "X-Pxserve-Pages-Read": {
        "description": "Pages of the PDF read, when fewer than it has",
        "schema": {"type": "integer"},
    },
    "X-Pxserve-Pages-Dropped": {
        "description": "Pages of the PDF left unread (Serving.max_pdf_pages; streamed: max_stream_pages)",
        "schema": {"type": "integer"},
    },
}


def _success(pipeline: Pipeline) -> dict[str, Any]:
    """The 200 answer; a pipeline that reads PDFs may also stream it, one JSON line per page."""
    answer = _json(_envelope({"$ref": REF.format(model=pipeline.result_model.__name__)}), "Success")
    if pipeline.pages_field:
        answer["description"] = (
            "Success. With Accept: application/x-ndjson: one envelope per line, each page's entry of "
            f"{pipeline.pages_field} as `result` with its `pageIndex`, as pages finish; then a last line "
            "with `result.dataInfo` and `result.totals`, or an error line naming the page that failed"
        )
        answer["content"]["application/x-ndjson"] = {"schema": {"type": "string"}}
        answer["headers"] = PAGES_HEADERS
    for media, writer in pipeline.document_formats.items():
        answer["description"] += f". With Accept: {media}: {writer.summary}"
        binary = {"type": "string", "format": "binary"} if "zip" in media else {"type": "string"}
        answer["content"][media] = {"schema": binary}
    return answer


def _inference(pipeline: Pipeline, unauthorized: dict[str, Any], guard: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": pipeline.summary or pipeline.name,
            "operationId": pipeline.name,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": REF.format(model=pipeline.request_model.__name__)}
                    }
                },
            },
            "responses": {
                "200": _success(pipeline),
                **unauthorized,
                "413": _error("Body or image over the limits"),
                "422": _error("Invalid request; errorMsg names the field"),
                "500": _error("The engine failed on this input"),
                "503": _error("Not ready, at capacity, or the worker exited; retry (see Retry-After)"),
                "408": _error("The body did not arrive within the request deadline"),
                "504": _error("No result within the request deadline"),
            },
            **guard,
        }
    }


def _server_paths(serving: ServingSettings, unauthorized: dict[str, Any], guarded: Any) -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "summary": "Readiness (PaddleX's body when ready)",
                "operationId": "health",
                "responses": {
                    "200": _json(_envelope(), "Ready"),
                    **(unauthorized if serving.auth_health else {}),
                    "503": _error("Workers are still loading the model"),
                },
                **guarded(not serving.auth_health),
            }
        },
        "/livez": {
            "get": {
                "summary": "Liveness: 200 while the server process answers, loading or not",
                "operationId": "live",
                "responses": {"200": _json(_envelope(), "Alive")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **(unauthorized if serving.auth_metrics else {}),
                },
                **guarded(not serving.auth_metrics),
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
            }
        },
        "/docs": {
            "get": {
                "summary": "This document as an interactive page (Swagger UI): try the routes from a browser",
                "operationId": "docs",
                "responses": {"200": _html("The page")},
            }
        },
        "/docs/static/{asset}": {
            "get": {
                "summary": "The page's scripts, styles and icons",
                "operationId": "docsAsset",
                "parameters": [
                    {"name": "asset", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "The file", "content": {"*/*": {"schema": {"type": "string"}}}},
                    "404": _error("No such file"),
                },
            }
        },
        "/": {
            "get": {
                "summary": "Redirects to /docs",
                "operationId": "home",
                "responses": {"302": {"description": "To the API page", "headers": {"Location": _LOCATION}}},
            }
        },
    }


_LOCATION = {"schema": {"type": "string"}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}
