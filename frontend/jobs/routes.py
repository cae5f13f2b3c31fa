"""PaddleOCR's job API over HTTP, at ``/api/v2/ocr/jobs`` (../docs/jobs.md for clients).

    POST   /api/v2/ocr/jobs                    submit: multipart upload, or JSON with fileUrl
    GET    /api/v2/ocr/jobs/batch/{batchId}    the jobs of a batch (routed before /{jobId})
    GET    /api/v2/ocr/jobs/{jobId}            a job's state and progress; its result URL once done
    DELETE /api/v2/ocr/jobs/{jobId}            cancel: its remaining pages are not read
    GET    /api/v2/ocr/jobs/files/{token}/{name}   the result file and pictures: no key needed

Answers are PaddleOCR's envelope, ``{"code": 0, "msg": "Success", "data": {...}}``;
errors carry the HTTP status as ``code`` and say why in ``msg`` (and
``errorMsg``, which some clients read). Everything a submit can get wrong is
refused at submit, with the field it concerns: a job, once accepted, fails
only for what reading its pages finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from pxserve.frontend.auth import load_api_keys
from pxserve.frontend.engine_client import EngineClient, PageStream
from pxserve.frontend.envelope import LOG_ID, Handler, log_id_of
from pxserve.frontend.file_store import data_dir, file_response, new_token, public_base
from pxserve.frontend.jobs.files import PREFIX as FILES_PREFIX
from pxserve.frontend.jobs.files import RESULT, JobFiles
from pxserve.frontend.jobs.runner import JobPipeline, JobRunner, build_task
from pxserve.frontend.jobs.store import Job, JobStore, open_store
from pxserve.frontend.jobs.submission import ModelCatalog, page_ranges, payload_fields
from pxserve.frontend.page_answers import wanted_document
from pxserve.shared.config import ConfigError, MiB, ServingSettings
from pxserve.shared.errors import RequestError
from pxserve.shared.image_input import read_by_pages
from pxserve.shared.messages import Outcome

log = logging.getLogger("pxserve.jobs")

PATH = "/api/v2/ocr/jobs"
MAX_FIELD_BYTES = 1 * MiB  # a form field or JSON body other than the file
RETRY_AFTER_S = 30
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass
class Jobs:
    """Everything the job routes share: the store, the files, the runner, the served models."""

    store: JobStore
    files: JobFiles
    runner: JobRunner
    catalog: ModelCatalog
    pipelines: dict[str, JobPipeline]
    engine: EngineClient
    serving: ServingSettings
    owners: dict[bytes, str] = field(default_factory=dict)  # API key -> the owner name jobs record

    def owner_of(self, request: web.Request) -> str:
        """Who submits or polls: a hash of their API key ("" when the server has none)."""
        if not self.owners:
            return ""
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.owners.get(token.strip().encode(), "")


JOBS = web.AppKey("jobs", Jobs)


# -- the envelope ---------------------------------------------------------------
def answer(request: web.Request, data: dict[str, Any], status: int = 200) -> web.Response:
    body = {"code": 0, "msg": "Success", "data": data, "logId": log_id_of(request)}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def refusal(request: web.Request, status: int, message: str) -> web.Response:
    body = {"code": status, "msg": message, "errorMsg": message, "data": None, "logId": log_id_of(request)}
    response = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    if status in (429, 503):
        response.headers["Retry-After"] = str(RETRY_AFTER_S if status == 429 else 5)
    elif status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@web.middleware
async def job_envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors under /api/v2/ocr/jobs in PaddleOCR's envelope (the routes' own, and auth's 401)."""
    if not request.path.startswith(PATH):
        return await handler(request)
    try:
        return await handler(request)
    except RequestError as exc:
        return refusal(request, exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return refusal(request, exc.status, exc.reason)


# -- submit ---------------------------------------------------------------------
@dataclass
class Submission:
    """A submit's fields as sent; the file already on disk (or still a URL to fetch)."""

    token: str
    model: str = ""
    payload: Any = None
    ranges: str | None = None
    batch_id: str | None = None
    file_url: str | None = None
    name: str = ""
    size: int = 0


async def submit(request: web.Request) -> web.Response:
    jobs = request.app[JOBS]
    await _check_room(jobs)
    sub = Submission(new_token())
    try:
        if request.content_type.startswith("multipart/"):
            await _read_form(request, jobs, sub)
        else:
            await _read_json(request, sub)
        job = await _accept(request, jobs, sub)
    except OSError as exc:  # the results location is full or gone
        await asyncio.to_thread(jobs.files.delete, sub.token)
        raise RequestError(
            503, f"cannot store the upload: {exc.strerror or exc}; submit again later"
        ) from None
    except BaseException:
        await asyncio.to_thread(jobs.files.delete, sub.token)
        raise
    await asyncio.to_thread(jobs.store.add, job)
    jobs.files.used_bytes += sub.size
    jobs.runner.wake.set()
    log.info(
        "job %s (logId=%s, %s, %s): pending: %s, %d page(s)%s",
        job.job_id, job.log_id, job.model, job.pipeline, job.input_name or "file", job.total_pages,
        f", batch {job.batch_id}" if job.batch_id else "",
    )  # fmt: skip
    return answer(request, {"jobId": job.job_id})


async def _check_room(jobs: Jobs) -> None:
    """A full server refuses new jobs here, never a poll."""
    pending = jobs.runner.counts.get("pending", 0)
    if pending >= jobs.serving.jobs.max_pending:
        raise RequestError(429, f"{pending} jobs are waiting (jobs.max_pending); submit again later")
    if jobs.files.full:
        raise RequestError(503, "the jobs' disk budget is used up (jobs.max_storage_mb); submit again later")


async def _read_form(request: web.Request, jobs: Jobs, sub: Submission) -> None:
    reader = await request.multipart()
    limit = jobs.serving.max_body_bytes
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            sub.name = (part.filename or "")[-200:]
            sub.size = await _save_upload(part, jobs.files.new_input(sub.token), limit)
            continue
        value = await part.read(decode=True)
        if len(value) > MAX_FIELD_BYTES:
            raise RequestError(413, f"form field {part.name} is larger than {MAX_FIELD_BYTES} bytes")
        text = value.decode("utf-8", errors="replace")
        if part.name == "model":
            sub.model = text.strip()
        elif part.name == "optionalPayload":
            sub.payload = text
        elif part.name == "pageRanges":
            sub.ranges = text
        elif part.name == "batchId":
            sub.batch_id = text.strip() or None
        elif part.name == "fileUrl":
            sub.file_url = text.strip()


async def _save_upload(part: BodyPartReader, path: Any, limit: int) -> int:
    size = 0
    with path.open("wb") as out:
        while chunk := await part.read_chunk(1 << 20):
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"file: the upload is larger than the limit of {limit} bytes")
            await asyncio.to_thread(out.write, chunk)
    return size


async def _read_json(request: web.Request, sub: Submission) -> None:
    body = await request.content.read(MAX_FIELD_BYTES + 1)
    if len(body) > MAX_FIELD_BYTES:
        raise RequestError(413, "a JSON submit carries a fileUrl, not the file: upload files as multipart")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(400, "request body must be a JSON object")
    sub.model = str(data.get("model") or "")
    sub.payload = data.get("optionalPayload")
    sub.ranges = data.get("pageRanges")
    sub.batch_id = str(data["batchId"]) if data.get("batchId") else None
    sub.file_url = data.get("fileUrl")
    if not isinstance(sub.file_url, str) or not sub.file_url.strip():
        raise RequestError(400, "fileUrl: required (or upload the file as multipart/form-data)")


async def _accept(request: web.Request, jobs: Jobs, sub: Submission) -> Job:
    """The job a submission makes, every field checked and the file's pages counted."""
    if not sub.model:
        raise RequestError(400, "model: required")
    choice = jobs.catalog.resolve(sub.model)
    fields, ignored = payload_fields(sub.payload, choice)
    if sub.ranges is not None and not isinstance(sub.ranges, str):
        raise RequestError(400, 'pageRanges must be a string such as "2,4-6"')
    wanted = page_ranges(sub.ranges)
    served = jobs.pipelines[choice.pipeline.name]
    if sub.file_url is not None and not sub.size:
        if served.images.fetch is None:
            raise RequestError(400, "fileUrl: this server does not fetch URLs (Serving.url_inputs.enabled)")
        data = await served.images.read(sub.file_url.strip(), "fileUrl")
        await asyncio.to_thread(jobs.files.new_input(sub.token).write_bytes, data)
        sub.name, sub.size = sub.file_url.rsplit("/", 1)[-1][:200], len(data)
    path = jobs.files.input_path(sub.token)
    if not sub.size:
        raise RequestError(400, "file: the upload is empty" if path.exists() else "file: required")
    if sub.size > served.pipeline.config.Serving.max_body_bytes:
        raise RequestError(413, f"file: larger than {served.pipeline.name}'s limit (Serving.max_body_mb)")
    data = await asyncio.to_thread(path.read_bytes)
    pages = await _count_pages(jobs, served, fields, data, wanted)
    notes = list(choice.notes)
    if ignored:
        notes.append(f"ignored (read by PaddleOCR-VL only): {', '.join(ignored)}")
    owner = jobs.owner_of(request)
    return Job(
        job_id=f"job-{uuid.uuid4().hex}",
        log_id=request[LOG_ID],
        owner=owner,
        model=sub.model,
        pipeline=choice.pipeline.name,
        request=fields,
        pages=pages,
        total_pages=len(pages),
        token=sub.token,
        base_url=public_base(request, jobs.serving),
        input_name=sub.name,
        input_bytes=sub.size,
        notes=notes,
        batch_id=sub.batch_id[:200] if sub.batch_id else None,
    )


async def _count_pages(
    jobs: Jobs, served: JobPipeline, fields: dict[str, Any], data: bytes, wanted: list[int] | None
) -> list[int]:
    """The pages a job will read: the file checked as a direct request's would be (format,
    size, pages; a PDF opened by a worker), then its page ranges applied."""
    pipeline = served.pipeline
    limit = pipeline.config.Serving.max_stream_pages
    async with jobs.engine.admission(pipeline.name) as deadline:
        task = await build_task(served, fields, data)  # the front's checks: format, size, pixels
        if not read_by_pages(data):
            in_file = 1
        else:
            opened = await jobs.engine.open_stream(pipeline.name, task, deadline, pages=())
            if isinstance(opened, Outcome):
                raise RequestError(opened.status, opened.message)
            await _close(opened)
            in_file = opened.pages.in_file
    if in_file > limit:
        raise RequestError(
            413,
            f"file: the document has {in_file} pages; a job reads at most {limit} (Serving.max_stream_pages)",
        )
    if wanted is None:
        return list(range(in_file))
    pages = [p for p in wanted if p < in_file]
    if not pages:
        raise RequestError(400, f"pageRanges: the file has {in_file} page(s); none of the pages asked for")
    return pages


async def _close(opened: PageStream) -> None:
    with contextlib.suppress(Exception):
        await opened.outcomes.aclose()  # type: ignore[attr-defined]


# -- status, batches, cancel ----------------------------------------------------------
def _when(moment: float | None) -> str | None:
    return time.strftime(TIME_FORMAT, time.gmtime(moment)) if moment else None


def status_of(job: Job, base_url: str) -> dict[str, Any]:
    """A job as PaddleOCR's clients read it (``state`` exactly one of the four); its result URL
    on ``base_url``, where the client asking reaches this server (a restarted server, or another
    of a fleet, may be somewhere else than the one it was submitted to)."""
    data: dict[str, Any] = {
        "jobId": job.job_id,
        "state": job.state,
        "model": job.model,
        "pipeline": job.pipeline,
        "extractProgress": {
            "totalPages": job.total_pages,
            "extractedPages": job.pages_done,
            "startTime": _when(job.started_at),
            "endTime": _when(job.finished_at),
        },
    }
    if job.batch_id:
        data["batchId"] = job.batch_id
    if job.notes:
        data["notes"] = job.notes
    if job.state == "done":
        data["resultUrl"] = {"jsonUrl": f"{base_url}{FILES_PREFIX}{job.token}/{RESULT}"}
    elif job.state == "failed":
        data["errorMsg"] = job.error or "failed"
    return data


async def _own_job(request: web.Request) -> Job:
    jobs = request.app[JOBS]
    job = await asyncio.to_thread(jobs.store.get, request.match_info["job_id"][:200])
    if job is None or job.owner != jobs.owner_of(request):
        raise RequestError(404, "no such job")
    return job


async def status(request: web.Request) -> web.StreamResponse:
    job = await _own_job(request)
    jobs = request.app[JOBS]
    pipeline = jobs.pipelines[job.pipeline].pipeline if job.pipeline in jobs.pipelines else None
    if job.state == "done" and pipeline is not None and (media := wanted_document(request, pipeline)):
        return await document(request, jobs, job, media)
    return answer(request, status_of(job, public_base(request, jobs.serving)))


async def batch(request: web.Request) -> web.Response:
    jobs = request.app[JOBS]
    batch_id = request.match_info["batch_id"][:200]
    found = await asyncio.to_thread(jobs.store.in_batch, batch_id, jobs.owner_of(request))
    if not found:
        raise RequestError(404, "no such batch")
    base = public_base(request, jobs.serving)
    return answer(request, {"batchId": batch_id, "extractResult": [status_of(j, base) for j in found]})


async def cancel(request: web.Request) -> web.Response:
    job = await _own_job(request)
    jobs = request.app[JOBS]
    if job.state in ("done", "failed"):
        raise RequestError(409, f"job {job.job_id} has already finished ({job.state})")
    if await asyncio.to_thread(jobs.store.cancel, job.job_id, "cancelled by the client"):
        jobs.runner.cancel(job.job_id)
        await asyncio.to_thread(jobs.files.delete, job.token)
        log.info("job %s (logId=%s): failed: cancelled by the client", job.job_id, job.log_id)
    return answer(request, status_of(await _own_job(request), public_base(request, jobs.serving)))


# -- files ------------------------------------------------------------------------
async def job_file(request: web.Request) -> web.StreamResponse:
    """The result file or a picture: the URL is the key (no Authorization header needed)."""
    jobs = request.app[JOBS]
    token, name = request.match_info["token"], request.match_info["name"]
    response = file_response(jobs.files.served, token, name)
    if name == RESULT:
        job = await asyncio.to_thread(jobs.store.by_token, token)
        pipeline = jobs.pipelines.get(job.pipeline) if job else None
        if job is not None and pipeline and (media := wanted_document(request, pipeline.pipeline)):
            return await document(request, jobs, job, media)
    return response


async def document(request: web.Request, jobs: Jobs, job: Job, media: str) -> web.Response:
    """A done document job as one file in a format its pipeline offers (Markdown, a zip)."""
    pipeline = jobs.pipelines[job.pipeline].pipeline
    pages = job.pages or [0]

    def write() -> bytes:
        with (jobs.files.folder(job.token) / RESULT).open("rb") as result:
            info = orjson.loads(result.readline())["result"]["dataInfo"]
        writer = pipeline.document_formats[media](info)
        for page in jobs.files.read_pages(job.token, pages):
            writer.add(page)
        return writer.finish()

    try:
        body = await asyncio.to_thread(write)
    except OSError:
        raise RequestError(404, "no such job result (it has expired)") from None
    return web.Response(body=body, headers={"Content-Type": media})


# -- wiring -------------------------------------------------------------------------
def add_job_routes(
    app: web.Application,
    serving: ServingSettings,
    engine: EngineClient,
    pipelines: dict[str, JobPipeline],
) -> Jobs | None:
    """The job API for the served pipelines a job model needs (none served: no job API)."""
    settings = serving.jobs
    catalog = ModelCatalog([p.pipeline for p in pipelines.values()], settings.model_aliases)
    if not settings.enabled or not catalog.served:
        return None
    for alias in catalog.check_aliases():
        log.warning("jobs: --job-model-alias %s names a model this server does not serve; ignored", alias)
    root = data_dir(serving) / "jobs"
    results = JobFiles(
        Path(settings.results_dir).expanduser() if settings.results_dir else root,
        settings.retention_hours * 3600,
        int(settings.max_storage_mb * MiB),
    )
    try:
        results.open()
        store = open_store(settings.store, root)
    except ConfigError as exc:
        chosen = (
            settings.results_dir or settings.store or serving.data_dir or os.environ.get("PXSERVE_DATA_DIR")
        )
        if chosen:
            raise  # the operator asked for this place: say it cannot be used, and stop
        # The default place is not writable (a read-only container): serve without jobs, and say so.
        why = (
            f"jobs need a writable data directory ({exc}); mount a volume, set --data-dir or PXSERVE_DATA_DIR"
        )
        log.warning("%s; the job API is off", why)
        app.router.add_route("*", PATH + "{rest:.*}", _off(why))
        return None
    runner = JobRunner(store, results, engine, pipelines, settings)
    keys = load_api_keys(serving)
    owners = {key: hashlib.sha256(key).hexdigest()[:16] for key in keys}
    jobs = Jobs(store, results, runner, catalog, pipelines, engine, serving, owners)
    app[JOBS] = jobs
    app.router.add_post(PATH, submit)
    app.router.add_get(PATH + "/batch/{batch_id}", batch)
    app.router.add_get(FILES_PREFIX + "{token}/{name}", job_file)
    app.router.add_get(PATH + "/{job_id}", status)
    app.router.add_delete(PATH + "/{job_id}", cancel)
    app.cleanup_ctx.append(_running(jobs))
    where = "PostgreSQL" if settings.store and "://" in settings.store else f"SQLite in {root}"
    log.info(
        "jobs: %s at %s (models: %s); state: %s; results: %s", "PaddleOCR's job API", PATH,
        ", ".join(catalog.served), where, results.root,
    )  # fmt: skip
    return jobs


def _off(why: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        raise RequestError(503, f"this server's job API is off: {why}")

    return handler


def _running(jobs: Jobs) -> Any:
    async def context(app: web.Application) -> AsyncIterator[None]:
        runner = asyncio.create_task(jobs.runner.run(), name="job runner")
        sweeper = asyncio.create_task(_sweep_forever(jobs), name="job sweeper")
        yield
        sweeper.cancel()
        runner.cancel()
        await asyncio.gather(runner, sweeper, return_exceptions=True)
        await jobs.runner.stop()
        await asyncio.to_thread(jobs.store.close)

    return context


SWEEP_EVERY_S = 60.0


async def _sweep_forever(jobs: Jobs) -> None:
    while True:
        await sweep(jobs)
        await asyncio.sleep(SWEEP_EVERY_S)


async def sweep(jobs: Jobs) -> None:
    """Delete finished jobs past their retention, with their files; measure the disk used."""
    retention_s = jobs.serving.jobs.retention_hours * 3600
    expired = await asyncio.to_thread(jobs.store.finished_before, time.time() - retention_s)
    for job in expired:
        await asyncio.to_thread(jobs.files.delete, job.token)
        await asyncio.to_thread(jobs.store.delete, job.job_id)
    if expired:
        log.info("jobs: %d finished job(s) past their retention deleted", len(expired))
    jobs.files.used_bytes = await asyncio.to_thread(jobs.files.measure)
