"""The job API's part of /openapi.json (frontend/openapi.py puts it beside the pipelines' routes)."""

from __future__ import annotations

from typing import Any

from pxserve.frontend.jobs.files import PREFIX as FILES_PREFIX
from pxserve.frontend.jobs.routes import PATH

ENVELOPE = {
    "type": "object",
    "properties": {
        "code": {"type": "integer", "description": "0, or the HTTP status"},
        "msg": {"type": "string"},
        "errorMsg": {"type": "string", "description": "on errors, the same as msg"},
        "data": {"type": ["object", "null"]},
        "logId": {"type": "string"},
    },
    "required": ["code", "msg", "data"],
}
SUBMIT_FORM = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the PDF or image"},
        "model": {
            "type": "string",
            "description": "PP-StructureV3, PP-OCRv6, PP-OCRv5, PP-OCRv5-latin or an alias",
        },
        "optionalPayload": {
            "type": "string",
            "description": "the pipeline's request fields, as a JSON object",
        },
        "pageRanges": {"type": "string", "description": "pages counted from 1, e.g. 2,4-6"},
        "batchId": {"type": "string"},
    },
    "required": ["file", "model"],
}
SUBMIT_JSON = {
    "type": "object",
    "properties": {
        "fileUrl": {"type": "string", "description": "fetched under the pipeline's url_inputs policy"},
        "model": {"type": "string"},
        "optionalPayload": {"type": ["object", "string", "null"]},
        "pageRanges": {"type": "string"},
        "batchId": {"type": "string"},
    },
    "required": ["fileUrl", "model"],
}


def _answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ENVELOPE}}}


def _errors(unauthorized: bool, *statuses: tuple[str, str]) -> dict[str, Any]:
    found = {status: _answer(text) for status, text in statuses}
    if unauthorized:
        found["401"] = _answer("Missing or wrong API key")
    return found


def _parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def job_paths(secured: bool) -> dict[str, Any]:
    guard = {"security": [{"bearer": []}]} if secured else {}
    status = _answer("The job: state (pending, running, done, failed), extractProgress, resultUrl once done")
    return {
        PATH: {
            "post": {
                "summary": "Submit a file as a job (PaddleOCR's job API)",
                "operationId": "submitJob",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": SUBMIT_FORM},
                        "application/json": {"schema": SUBMIT_JSON},
                    },
                },
                "responses": {
                    "200": _answer("Accepted: data.jobId"),
                    **_errors(
                        secured,
                        ("400", "A field is wrong (msg names it)"),
                        ("413", "The file is over a limit (size, pages)"),
                        ("422", "The file cannot be read"),
                        ("429", "Too many jobs waiting (Retry-After)"),
                        ("503", "Not ready, or the jobs' disk budget is used up (Retry-After)"),
                    ),
                },
                **guard,
            }
        },
        PATH + "/batch/{batch_id}": {
            "get": {
                "summary": "The jobs of a batch",
                "operationId": "batchJobs",
                "parameters": [_parameter("batch_id")],
                "responses": {
                    "200": _answer("data.extractResult: each job"),
                    **_errors(secured, ("404", "No such batch")),
                },
                **guard,
            }
        },
        PATH + "/{job_id}": {
            "get": {
                "summary": "A job's state; a done document job also as text/markdown or application/zip",
                "operationId": "getJob",
                "parameters": [_parameter("job_id")],
                "responses": {"200": status, **_errors(secured, ("404", "No such job"))},
                **guard,
            },
            "delete": {
                "summary": "Cancel a job: its remaining pages are not read",
                "operationId": "cancelJob",
                "parameters": [_parameter("job_id")],
                "responses": {
                    "200": status,
                    **_errors(secured, ("404", "No such job"), ("409", "The job has finished")),
                },
                **guard,
            },
        },
        FILES_PREFIX + "{token}/{name}": {
            "get": {
                "summary": "A job's result file (JSONL) or picture: the URL is the key, no Authorization",
                "operationId": "jobFile",
                "parameters": [_parameter("token"), _parameter("name")],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {
                            "application/jsonl": {"schema": {"type": "string"}},
                            "*/*": {"schema": {"type": "string"}},
                        },
                    },
                    "404": _answer("No such file (wrong or expired link)"),
                },
            }
        },
    }
