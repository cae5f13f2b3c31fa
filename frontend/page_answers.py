"""Answers about a document's pages: streamed one line per page, and the note when pages were dropped.

A client that sends ``Accept: application/x-ndjson`` to a route whose
pipeline reads PDFs gets newline-delimited JSON, each line in PaddleX's
envelope form:

* one line per page, in page order, as soon as it and the pages before it
  are done: ``{"logId", "errorCode": 0, "errorMsg": "Success", "pageIndex": i,
  "result": <the page's entry, exactly as in the normal answer's list>}``;
* a last line ``{"logId", "errorCode": 0, "errorMsg": "Success", "result":
  {"dataInfo", "totals": {"pages", "pagesInFile", "pagesDropped", "seconds"}}}``;
* or, when something fails after the first byte, a last line
  ``{"logId", "errorCode": <status>, "errorMsg", "pageIndex"}`` naming the page
  that failed. A stream never just stops: one still running when the server
  stops gets the drain grace, then a 503 line, while its connection still
  carries it.

Failures before the first page (bad request, unreadable file, full queue)
are ordinary error answers with their status.

A pipeline may also offer whole documents (``Pipeline.document_formats``,
e.g. PP-StructureV3's ``text/markdown`` and ``application/zip``): a client
that prefers one of those media types gets the document, written from the
same pages in order (:func:`answer_document`). An image is a one-page
stream. A streamed PDF reads up to ``Serving.max_stream_pages`` pages; the
normal answer reads ``max_pdf_pages`` and, when the file has more, says so
in ``X-Pxserve-Pages-Dropped`` (PaddleX clients ignore headers) and in the
log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from pxserve.frontend.engine_client import EngineClient, PageStream, Reading
from pxserve.frontend.envelope import failure, log_id_of
from pxserve.shared.errors import RequestError
from pxserve.shared.messages import DocumentPages, Outcome, Task
from pxserve.shared.pipelines import Pipeline

log = logging.getLogger("pxserve.pages")

NDJSON = "application/x-ndjson"
# Set while the server stops, shortly before its drain grace ends: streams still running then end
# with a 503 line, while their connection can still carry it.
STREAMS_END = web.AppKey("streams_end", asyncio.Event)
STREAM_END_MARGIN_S = 5.0
PAGES_READ = "X-Pxserve-Pages-Read"
PAGES_DROPPED = "X-Pxserve-Pages-Dropped"


def _preferences(request: web.Request) -> dict[str, float]:
    """The client's Accept header: media type -> quality."""
    preference = {}
    for part in request.headers.get("Accept", "").split(","):
        media, *options = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip() == "q":
                with contextlib.suppress(ValueError):
                    quality = float(value)
        preference[media.lower()] = quality
    return preference


def wants_stream(request: web.Request) -> bool:
    """Whether the client prefers NDJSON to JSON (its Accept header, with q-values)."""
    preference = _preferences(request)
    ndjson = preference.get(NDJSON, 0.0)
    return ndjson > 0 and ndjson >= preference.get("application/json", 0.0)


def wanted_document(request: web.Request, pipeline: Pipeline) -> str | None:
    """The whole-document format the client prefers to JSON and NDJSON, if the pipeline offers one."""
    preference = _preferences(request)
    offered = [(preference.get(media, 0.0), media) for media in pipeline.document_formats]
    quality, media = max(offered, default=(0.0, ""))
    others = max(preference.get("application/json", 0.0), preference.get(NDJSON, 0.0))
    return media if quality > 0 and quality >= others else None


def end_streams_on_shutdown(app: web.Application, drain_grace_s: float) -> None:
    """Give streams the server's drain grace, less a margin, to finish once it starts stopping."""
    app[STREAMS_END] = asyncio.Event()

    async def on_shutdown(app: web.Application) -> None:
        delay = max(0.0, drain_grace_s - STREAM_END_MARGIN_S)
        asyncio.get_running_loop().call_later(delay, app[STREAMS_END].set)

    app.on_shutdown.append(on_shutdown)


def note_dropped(request: web.Request, response: web.StreamResponse, reading: Reading, limit: str) -> None:
    """Say in the headers and the log when the answer left some of a file's pages unread."""
    dropped = reading.pages_dropped
    if not dropped:
        return
    document = max(reading.documents, key=lambda d: d.dropped)
    response.headers[PAGES_READ] = str(document.read)
    response.headers[PAGES_DROPPED] = str(dropped)
    log.info(
        "logId=%s: %s read %d of the PDF's %d pages (Serving.%s); %d dropped%s",
        log_id_of(request), request.path, document.read, document.in_file, limit, dropped,
        "" if limit == "max_stream_pages" else f"; send Accept: {NDJSON} to stream them all",
    )  # fmt: skip


async def stream_pages(
    request: web.Request,
    pipeline: Pipeline,
    engine: EngineClient,
    task: Task,
    deadline: float,
    present: Callable[[web.Request, bytes], Awaitable[bytes]] | None = None,
) -> web.StreamResponse:
    """Answer an admitted request as NDJSON, one line per page as pages finish; ``present``
    turns a page's result into what the client gets (its files as URLs)."""
    log_id = log_id_of(request)
    started = asyncio.get_running_loop().time()
    opened = await engine.open_stream(pipeline.name, task, deadline)
    if isinstance(opened, Outcome):
        if not opened.ok:
            return failure(log_id, opened.status, opened.message)
        opened = _one_document(pipeline, opened)
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    note_dropped(request, response, Reading([opened.pages]), "max_stream_pages")
    await response.prepare(request)
    lines = _Lines(request, response, engine.settings[pipeline.name].request_timeout_s)
    sent = 0
    async with contextlib.aclosing(opened.outcomes) as outcomes:
        try:
            while (outcome := await _next_page(outcomes, request.app[STREAMS_END])) is not None:
                if not outcome.ok:
                    return await lines.last(_error(log_id, outcome.status, outcome.message, sent))
                body = await present(request, outcome.body) if present else outcome.body
                await lines.send(_page(log_id, sent, body))
                sent += 1
        except RequestError as exc:
            return await lines.last(_error(log_id, exc.status, exc.message, sent))
        except _ServerStoppingError:
            stopping = (
                "the server is stopping; the pages from this one on were not read: send the request again"
            )
            return await lines.last(_error(log_id, 503, stopping, sent))
        except (ConnectionResetError, _ClientStalledError):
            return response  # nobody reads on; leaving cancels the pages still running
        except asyncio.CancelledError:
            log.info("logId=%s: stream cancelled at page %d: its client left", log_id, sent)
            raise
        except Exception:
            log.exception("streaming %s failed at page %d (logId %s)", request.path, sent, log_id)
            return await lines.last(_error(log_id, 500, "Internal server error", sent))
    seconds = asyncio.get_running_loop().time() - started
    info = opened.pages
    totals = {
        "pages": sent,
        "pagesInFile": info.in_file,
        "pagesDropped": info.in_file - sent,
        "seconds": round(seconds, 3),
    }
    log.info("logId=%s: streamed %d of %d pages in %.1f s", log_id, sent, info.in_file, seconds)
    return await lines.last(
        _envelope(log_id, 0, "Success", result={"dataInfo": info.data_info, "totals": totals})
    )


async def answer_document(
    request: web.Request, pipeline: Pipeline, engine: EngineClient, task: Task, deadline: float, media: str
) -> web.StreamResponse:
    """Answer an admitted request with the whole document in ``media`` (one of the pipeline's
    ``document_formats``), written from its pages in order. A format that streams sends each
    page's part as it comes and, if a page fails after the first byte, ends with its own
    account of why; one that does not answers at the end, so a failure is an ordinary error."""
    log_id = log_id_of(request)
    opened = await engine.open_stream(pipeline.name, task, deadline)
    if isinstance(opened, Outcome):
        if not opened.ok:
            return failure(log_id, opened.status, opened.message)
        opened = _one_document(pipeline, opened)
    writer = pipeline.document_formats[media](opened.pages.data_info)
    response: web.StreamResponse | None = None
    if writer.streams:
        response = web.StreamResponse(headers={"Content-Type": writer.media_type})
        note_dropped(request, response, Reading([opened.pages]), "max_stream_pages")
        await response.prepare(request)
    chunks = _Lines(request, response, engine.settings[pipeline.name].request_timeout_s) if response else None
    sent = 0
    status, message = 0, ""
    async with contextlib.aclosing(opened.outcomes) as outcomes:
        try:
            while (outcome := await _next_page(outcomes, request.app[STREAMS_END])) is not None:
                if not outcome.ok:
                    status, message = outcome.status, outcome.message
                    break
                part = writer.add(orjson.loads(outcome.body))
                if chunks is not None and part:
                    await chunks.send(part, end=b"")
                sent += 1
        except RequestError as exc:
            status, message = exc.status, exc.message
        except _ServerStoppingError:
            status, message = 503, "the server is stopping: send the request again"
        except (ConnectionResetError, _ClientStalledError):
            return response or web.Response(status=499)  # nobody reads on
        except asyncio.CancelledError:
            log.info("logId=%s: document cancelled at page %d: its client left", log_id, sent)
            raise
        except Exception:
            log.exception("writing %s as %s failed at page %d (logId %s)", request.path, media, sent, log_id)
            status, message = 500, "Internal server error"
    if status:
        message = f"page {sent + 1}: {message}" if opened.pages.in_file > 1 else message
        log.info("logId=%s: document ended at page %d with %d: %s", log_id, sent, status, message)
        if chunks is None:
            return failure(log_id, status, message)
        return await chunks.last(writer.fail(status, message), end=b"")
    log.info("logId=%s: wrote %d pages as %s", log_id, sent, media)
    if chunks is None:
        answer = web.Response(body=writer.finish(), headers={"Content-Type": writer.media_type})
        note_dropped(request, answer, Reading([opened.pages]), "max_stream_pages")
        return answer
    return await chunks.last(writer.finish(), end=b"")


async def _next_page(outcomes: AsyncIterator[Outcome], ending: asyncio.Event) -> Outcome | None:
    """The next page's outcome (None after the last); _ServerStoppingError if ``ending`` comes first."""
    step = asyncio.ensure_future(anext(outcomes, None))
    stop = asyncio.ensure_future(ending.wait())
    try:
        await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
        if step.done():
            return step.result()
        raise _ServerStoppingError
    finally:
        stop.cancel()
        if not step.done():
            step.cancel()  # the pages running are cancelled with it
            await asyncio.gather(step, return_exceptions=True)


class _ServerStoppingError(Exception):
    """The server is stopping and its drain grace is nearly over."""


def _one_document(pipeline: Pipeline, outcome: Outcome) -> PageStream:
    """A whole answer (an image) as a stream of its entries: the same lines as a PDF's."""
    result = orjson.loads(outcome.body)
    entries = result[pipeline.pages_field]

    async def each() -> AsyncIterator[Outcome]:
        for entry in entries:
            yield Outcome(outcome.request_id, 200, orjson.dumps(entry))

    return PageStream(DocumentPages(result["dataInfo"], len(entries)), each())


class _ClientStalledError(Exception):
    """The client stopped reading the stream."""


class _Lines:
    """Writes lines to a prepared response; a client that reads none for ``timeout_s`` is cut off."""

    def __init__(self, request: web.Request, response: web.StreamResponse, timeout_s: float) -> None:
        self.request, self.response, self.timeout_s = request, response, timeout_s

    async def send(self, line: bytes, end: bytes = b"\n") -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.response.write(line + end)
        except TimeoutError:
            log.warning("a client read nothing of its stream for %g s; closing it", self.timeout_s)
            if self.request.transport is not None:
                self.request.transport.abort()
            raise _ClientStalledError from None

    async def last(self, line: bytes, end: bytes = b"\n") -> web.StreamResponse:
        with contextlib.suppress(ConnectionResetError, _ClientStalledError):
            await self.send(line, end)
            await self.response.write_eof()
        return self.response


def _envelope(log_id: str, code: int, message: str, **fields: Any) -> bytes:
    return orjson.dumps({"logId": log_id, "errorCode": code, "errorMsg": message, **fields})


def _page(log_id: str, index: int, result: bytes) -> bytes:
    return _envelope(log_id, 0, "Success", pageIndex=index, result=orjson.Fragment(result))


def _error(log_id: str, status: int, message: str, index: int) -> bytes:
    log.info("logId=%s: stream ended at page %d with %d: %s", log_id, index, status, message)
    return _envelope(log_id, status, message, pageIndex=index)
