"""The job runner: one more client of the engine, beside the HTTP routes.

Each server runs one. It claims jobs from the store (frontend/jobs/store.py)
up to ``jobs.running_per_server`` at a time, and reads each as a streamed
request: the file's pages come back from the engine one by one, in order,
and each is written to the results location as soon as it is read, then
counted in the store. So a job outlives its connection (there is none), a
restart (the store and the page files are on disk; the next start goes on
from the first page not written) and its server (any server of a fleet
takes it over once its lease runs out).

Job pages are *background* work for the engine: they wait while direct
requests' tasks are queued, and a worker holds fewer of them (see
frontend/engine_client.py), so a backlog of jobs never starves a request
sent to a route; jobs fill the capacity requests leave idle.

While a job runs, its server renews its lease every third of ``lease_s``;
if the renewal finds the job taken over or cancelled, the reading stops.
A server that stops gives its running jobs back at once (their lease
cleared), so another server, or itself restarted, goes on without waiting.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from pxserve.frontend.engine_client import EngineClient, PageStream
from pxserve.frontend.jobs.files import JobFiles
from pxserve.frontend.jobs.store import Job, JobStore, State
from pxserve.shared.config import JobSettings, describe_validation_error
from pxserve.shared.errors import RequestError
from pxserve.shared.image_input import ImageLoader
from pxserve.shared.messages import DocumentPages, Outcome
from pxserve.shared.pipelines import Pipeline

log = logging.getLogger("pxserve.jobs")

POLL_S = 1.0  # how often an idle runner looks for jobs other servers (or processes) submitted
CENSUS_S = 5.0  # how often the counts behind /metrics and the submit limits are read


class LostJobError(Exception):
    """This server no longer holds the job: another took it over, or it was cancelled."""


@dataclass(frozen=True)
class JobPipeline:
    """A served pipeline as the runner needs it: to rebuild a job's request and read its file."""

    pipeline: Pipeline
    images: ImageLoader


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        files: JobFiles,
        engine: EngineClient,
        pipelines: dict[str, JobPipeline],
        settings: JobSettings,
    ) -> None:
        self.store, self.files, self.engine = store, files, engine
        self.pipelines = pipelines
        self.settings = settings
        self.server_id = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
        self.running: dict[str, asyncio.Task[None]] = {}
        self._abandoned: set[str] = set()  # jobs being stopped because cancelled or taken over
        self.wake = asyncio.Event()
        self.counts: dict[str, int] = {}
        self.oldest_pending: float | None = None
        self.pages_read = 0  # by this server, for /metrics
        self.on_page = lambda: None

    # -- the loop --------------------------------------------------------------
    async def run(self) -> None:
        """Claim and read jobs until cancelled (the server stops)."""
        await self.take_back_from_dead()
        census_due = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() >= census_due:
                await self.refresh_census()
                census_due = loop.time() + CENSUS_S
            while len(self.running) < self.settings.running_per_server and self.engine.supervisor.ready:
                job = await asyncio.to_thread(
                    self.store.claim, self.server_id, self.settings.lease_s, list(self.pipelines)
                )
                if job is None:
                    break
                self._note(job, "running", f"on {self.server_id}, from page {job.pages_done + 1}")
                self.running[job.job_id] = asyncio.create_task(self._run(job), name=f"job {job.job_id}")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self.wake.wait()

    async def take_back_from_dead(self) -> None:
        """Free the jobs an earlier process on this machine held when it was killed, so a restarted
        server goes on with them at once rather than after their lease runs out."""
        for job_id, holder in (await asyncio.to_thread(self.store.holders)).items():
            if _process_gone(holder, self.server_id) and await asyncio.to_thread(
                self.store.release, job_id, holder
            ):
                log.info(
                    "job %s: its server (%s) is gone; it goes on from its last page read", job_id, holder
                )

    async def refresh_census(self) -> None:
        self.counts, self.oldest_pending = await asyncio.to_thread(self.store.census)

    async def stop(self) -> None:
        """Stop reading; give the jobs in hand back, to be gone on with from their last page."""
        jobs = list(self.running.items())
        for _, task in jobs:
            task.cancel()
        await asyncio.gather(*(task for _, task in jobs), return_exceptions=True)
        for job_id, _ in jobs:
            if await asyncio.to_thread(self.store.release, job_id, self.server_id):
                log.info("job %s: given back (server stopping); it goes on from its last page read", job_id)

    def cancel(self, job_id: str) -> None:
        """A client cancelled the job: stop reading it here at once (the store says so to others)."""
        task = self.running.get(job_id)
        if task is not None:
            self._abandoned.add(job_id)
            task.cancel()

    # -- one job ---------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        reading = asyncio.current_task()
        assert reading is not None
        holding = asyncio.create_task(self._hold(job, reading))
        try:
            await self._read(job)
        except asyncio.CancelledError:
            if job.job_id not in self._abandoned:
                raise  # the server stops
            reading.uncancel()
            log.info("job %s: stopped here (cancelled, or taken over by another server)", job.job_id)
        except RequestError as exc:
            await self._finish(job, "failed", exc.message)
        except LostJobError:
            log.info("job %s: stopped here (cancelled, or taken over by another server)", job.job_id)
        except OSError as exc:  # a full disk, a results volume gone
            await self._finish(job, "failed", f"could not store the result: {exc.strerror or exc}")
        except Exception:
            log.exception("job %s: unexpected error", job.job_id)
            await self._finish(job, "failed", "internal error while reading the file")
        finally:
            holding.cancel()
            self.running.pop(job.job_id, None)
            self._abandoned.discard(job.job_id)
            self.wake.set()

    async def _hold(self, job: Job, reading: asyncio.Task[None]) -> None:
        """Renew the lease while the job is read; stop the reading if it is lost."""
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            if not await asyncio.to_thread(
                self.store.renew, job.job_id, self.server_id, self.settings.lease_s
            ):
                self._abandoned.add(job.job_id)
                reading.cancel()
                return

    async def _read(self, job: Job) -> None:
        served = self.pipelines[job.pipeline]
        pipeline = served.pipeline
        data = await asyncio.to_thread(self.files.read_input, job.token)
        task = await build_task(served, job.request, data)
        written = await asyncio.to_thread(self.files.pages_written, job.token)
        pages = job.pages if job.pages is not None else [0]
        todo = [p for p in pages if p not in written]
        timeout = self.engine.settings[pipeline.name].request_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        opened = await self.engine.open_stream(pipeline.name, task, deadline, set(todo), background=True)
        if isinstance(opened, Outcome):
            if not opened.ok:
                raise RequestError(opened.status, opened.message)
            opened = one_document(pipeline, opened)
        data_info = selected_info(opened.pages, pages)
        done = len(pages) - len(todo)
        async with contextlib.aclosing(opened.outcomes) as outcomes:
            for index in todo:  # the stream yields the pages asked for, in order
                outcome = await anext(outcomes, None)
                if outcome is None:
                    break
                if not outcome.ok:
                    raise RequestError(outcome.status, f"page {index + 1}: {outcome.message}")
                page = orjson.loads(outcome.body)
                await asyncio.to_thread(self.files.write_page, job.token, index, page, job.base_url)
                done += 1
                self.pages_read += 1
                self.on_page()
                if not await asyncio.to_thread(self.store.progress, job.job_id, self.server_id, done):
                    raise LostJobError(job.job_id)
        if done < len(pages):
            raise RequestError(500, f"the engine stopped after {done} of {len(pages)} pages")
        about = {"model": job.model, "pipeline": job.pipeline, "notes": job.notes}
        await asyncio.to_thread(
            self.files.write_result, job.token, pipeline.pages_field, data_info, pages, about
        )
        await self._finish(job, "done")

    async def _finish(self, job: Job, state: State, error: str | None = None) -> None:
        if await asyncio.to_thread(self.store.finish, job.job_id, self.server_id, state, error):
            self._note(job, state, error or f"{job.total_pages} page(s)")
        if state == "failed":  # nothing of it will be fetched: its disk is free for other jobs
            await asyncio.to_thread(self.files.delete, job.token)

    @staticmethod
    def _note(job: Job, state: str, detail: str) -> None:
        log.info(
            "job %s (logId=%s, %s, %s): %s: %s",
            job.job_id,
            job.log_id,
            job.model,
            job.pipeline,
            state,
            detail,
        )


def _process_gone(holder: str, me: str) -> bool:
    """Whether ``holder`` (a server id: host/pid/nonce) was a process of this machine that is no more."""
    host, pid, nonce = [*holder.split("/"), "", "", ""][:3]
    my_host, my_pid, my_nonce = me.split("/")
    if host != my_host or not pid.isdigit():
        return False
    if pid == my_pid:
        return nonce != my_nonce  # this pid's earlier life (a container's pid 1)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def build_task(served: JobPipeline, fields: dict[str, Any], data: bytes) -> Any:
    """The first task of a job's file: the pipeline's request, as a direct client would send it."""
    request = {**fields, "file": base64.b64encode(data).decode("ascii")}
    try:
        validated = served.pipeline.request_model.model_validate(request)
    except ValidationError as exc:
        raise RequestError(400, f"optionalPayload: {describe_validation_error(exc)}") from None
    return await served.pipeline.parse(validated, served.images)


def one_document(pipeline: Pipeline, outcome: Outcome) -> PageStream:
    """A whole answer (an image) as a stream of its entries: the same pages as a PDF's."""
    result = orjson.loads(outcome.body)
    entries = result[pipeline.pages_field]

    async def each() -> AsyncIterator[Outcome]:
        for entry in entries:
            yield Outcome(outcome.request_id, 200, orjson.dumps(entry))

    return PageStream(DocumentPages(result["dataInfo"], len(entries)), each())


def selected_info(document: DocumentPages, pages: list[int]) -> dict[str, Any]:
    """The document's ``dataInfo`` for the pages a job reads (its pageRanges)."""
    info = dict(document.data_info)
    sizes = info.get("pages")
    if isinstance(sizes, list) and len(sizes) > max(pages, default=0):
        info["pages"] = [sizes[p] for p in pages]
        info["numPages"] = len(pages)
    return info
