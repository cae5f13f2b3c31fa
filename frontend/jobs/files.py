"""A job's files, in one folder named by its secret token under the results location.

    <results_dir>/files/<token>/.input          the upload (never served: a name starting with ".")
    <results_dir>/files/<token>/.pages/000003   page 4's result, written once it is read
    <results_dir>/files/<token>/p4_*.jpg        its pictures, served by URL
    <results_dir>/files/<token>/result.jsonl    the result file, written when the last page is read

A page's result is one file, written whole (a temporary name, then renamed),
so a job taken over after its server was killed reads only the pages whose
file is missing, and no page can appear twice in the result. The result file
is put together from the page files in page order, one JSONL line per page,
at the end. Everything a client fetches is served through
:class:`~pxserve.frontend.file_store.FileStore`'s checks (names, expiry).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from pxserve.frontend.file_store import FileStore

PREFIX = "/api/v2/ocr/jobs/files/"
RESULT = "result.jsonl"
_INPUT = ".input"
_PAGES = ".pages"


class JobFiles:
    """The results location: what every server of a fleet reads and writes (a shared volume)."""

    def __init__(self, root: Path, retention_s: float, max_bytes: int) -> None:
        self.root = root
        self.served = FileStore(root / "files", retention_s, max_bytes, url_prefix=PREFIX)
        self.max_bytes = max_bytes
        self.used_bytes = 0  # as of the last sweep, plus what was uploaded since

    def open(self) -> None:
        self.served.open_folder("jobs.results_dir")
        self.used_bytes = self.measure()

    def folder(self, token: str) -> Path:
        return self.served.folder / token

    # -- the upload ----------------------------------------------------------
    def input_path(self, token: str) -> Path:
        return self.folder(token) / _INPUT

    def new_input(self, token: str) -> Path:
        """Where to write an upload (its folder made)."""
        (self.folder(token) / _PAGES).mkdir(parents=True, exist_ok=True)
        return self.input_path(token)

    def read_input(self, token: str) -> bytes:
        return self.input_path(token).read_bytes()

    # -- pages ---------------------------------------------------------------
    def pages_written(self, token: str) -> set[int]:
        folder = self.folder(token) / _PAGES
        return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.is_dir() else set()

    def write_page(self, token: str, index: int, page: dict[str, Any], base_url: str) -> int:
        """Store page ``index``'s result, its pictures as files served by URL; its size in bytes."""
        page = self.served.put_answer(page, base_url, token=token, prefix=f"p{index + 1}_")
        _with_empty_maps(page)
        body = orjson.dumps(page)
        _write_whole(self.folder(token) / _PAGES / f"{index:06d}", body)
        self.used_bytes += len(body)
        return len(body)

    def read_pages(self, token: str, indices: list[int]) -> Iterator[dict[str, Any]]:
        """The pages as a direct request answers them: their Markdown's pictures in Base64 again
        (they are stored as files, their URLs in the page), for a document written from them."""
        for index in indices:
            page = orjson.loads((self.folder(token) / _PAGES / f"{index:06d}").read_bytes())
            markdown = page.get("markdown") or {}
            images = markdown.get("images") or {}
            for path, url in images.items():
                name = str(url).rpartition(f"{PREFIX}{token}/")[2]
                file = self.served.path_of(token, name) if name else None
                if file is None:
                    raise OSError(f"picture {path} of page {index + 1} is gone")
                images[path] = base64.b64encode(file.read_bytes()).decode("ascii")
            yield page

    def write_result(
        self,
        token: str,
        pages_field: str,
        data_info: dict[str, Any],
        indices: list[int],
        about: dict[str, Any],
    ) -> None:
        """The result file: one ``{"result": {<pages_field>: [page], "dataInfo", "jobInfo"}}`` line per
        page, in order, each with the whole document's ``dataInfo`` (clients merge it line by line);
        ``jobInfo`` (``about``) says which pipeline read the job, and why, when not the one named."""
        target = self.folder(token) / RESULT
        partial = target.with_name(".result.partial")
        info, job_info = orjson.dumps(data_info), orjson.dumps(about)
        with partial.open("wb") as out:
            for index in indices:
                page = (self.folder(token) / _PAGES / f"{index:06d}").read_bytes()
                line = b'{"result":{"%s":[%s],"dataInfo":%s,"jobInfo":%s}}\n'
                out.write(line % (pages_field.encode(), page, info, job_info))
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)

    # -- housekeeping --------------------------------------------------------
    def delete(self, token: str) -> None:
        shutil.rmtree(self.folder(token), ignore_errors=True)

    def measure(self) -> int:
        """Bytes the jobs' files take (a walk of the folder: run it off the event loop)."""
        total = 0
        for dirpath, _, names in os.walk(self.served.folder):
            for name in names:
                try:
                    total += os.stat(os.path.join(dirpath, name)).st_size
                except OSError:
                    continue
        return total

    @property
    def full(self) -> bool:
        return self.used_bytes >= self.max_bytes


def _write_whole(path: Path, body: bytes) -> None:
    """Write a file so that it exists whole or not at all, even across a SIGKILL or power loss."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)


def _with_empty_maps(page: dict[str, Any]) -> None:
    """``markdown.images`` and ``outputImages`` as ``{}``, never null: clients iterate them."""
    if "markdown" in page and isinstance(page["markdown"], dict):
        page["markdown"]["images"] = page["markdown"].get("images") or {}
    if "outputImages" in page or "markdown" in page:
        page["outputImages"] = page.get("outputImages") or {}
