"""Files this server hands out by URL: PaddleX 3.7's ``Serving.return_urls``.

With ``return_urls`` set, a pipeline's pictures (``outputImages``,
``markdown.images``, ``inputImage``...) and exported files (``exports``) are
answered as absolute URLs instead of Base64: each answer's files are written
under ``<data_dir>/files/<token>/`` and served at ``GET /files/<token>/<name>``.
The token is unguessable (128 random bits) and the URL is the only key: it
works without the ``Authorization`` header, as PaddleX's storage URLs do,
and never names a path of the file system (names are checked, never joined
as given). Files expire after ``Serving.file_ttl_hours`` and the folder is
kept under ``Serving.max_file_storage_mb``, the oldest answers' files going
first; a sweep runs every minute and once at startup.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pxserve.shared.config import ConfigError, MiB, ServingSettings
from pxserve.shared.errors import RequestError

log = logging.getLogger("pxserve.files")

PREFIX = "/files/"
SWEEP_EVERY_S = 60.0
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".jsonl": "application/jsonl; charset=utf-8",
}
# Result fields that hold Base64 files: one file, or a map of names to files.
SINGLE_FILES = ("image", "outputImage", "ocrImage", "docPreprocessingImage", "inputImage")
FILE_MAPS = ("outputImages", "images")


def data_dir(serving: ServingSettings) -> Path:
    """Where this server keeps what outlives an answer: ``Serving.data_dir``, else
    ``$PXSERVE_DATA_DIR``, else ``$XDG_DATA_HOME/pxserve`` (``~/.local/share/pxserve``)."""
    if serving.data_dir:
        return Path(serving.data_dir).expanduser()
    if os.environ.get("PXSERVE_DATA_DIR"):
        return Path(os.environ["PXSERVE_DATA_DIR"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pxserve"


class FileStore:
    """Answers' files on disk, each answer's under a token of its own."""

    def __init__(self, folder: Path, ttl_s: float, max_bytes: int, url_prefix: str = PREFIX) -> None:
        self.folder = folder
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.url_prefix = url_prefix  # the route its files are served under

    @classmethod
    def of(cls, serving: ServingSettings) -> FileStore:
        budget = int(serving.max_file_storage_mb * MiB)
        return cls(data_dir(serving) / "files", serving.file_ttl_hours * 3600, budget)

    def open(self) -> None:
        """Create the folder (a clear startup error if it cannot be) and drop what has expired."""
        self.open_folder("Serving.return_urls")
        self.sweep()

    def open_folder(self, setting: str) -> None:
        """Create the folder, or fail with a startup error naming the ``setting`` that needs it."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot write to {self.folder}: {exc.strerror}") from None

    def put_answer(
        self, result: dict[str, Any], base_url: str, token: str | None = None, prefix: str = ""
    ) -> dict[str, Any]:
        """``result`` with every Base64 file it holds written out and replaced by its URL: under a
        new token, or ``token``'s folder with names starting ``prefix`` (a job's page)."""
        token = token or new_token()
        folder = self.folder / token
        names: set[str] = set()

        def put(value: str, name: str) -> str:
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return value  # not a file: left as it is
            filename = _unique(prefix + _safe_name(name, data), names)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / filename).write_bytes(data)
            return f"{base_url}{self.url_prefix}{token}/{filename}"

        _replace_files(result, put)
        return result

    def path_of(self, token: str, name: str) -> Path | None:
        """The file a URL names, if it is still there and not expired."""
        if not _TOKEN.match(token) or not _NAME.match(name):
            return None
        path = self.folder / token / name
        try:
            if time.time() - path.stat().st_mtime > self.ttl_s:
                return None
        except OSError:
            return None
        return path

    def sweep(self) -> None:
        """Delete expired answers' files, then the oldest until the folder is within its budget."""
        now = time.time()
        answers = []
        for folder in self.folder.iterdir() if self.folder.is_dir() else []:
            try:
                stat = folder.stat()
                size = sum(f.stat().st_size for f in folder.iterdir())
            except OSError:
                continue
            if now - stat.st_mtime > self.ttl_s:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                answers.append((stat.st_mtime, size, folder))
        total = sum(size for _, size, _ in answers)
        for _, size, folder in sorted(answers):
            if total <= self.max_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= size


def _replace_files(node: Any, put: Callable[[str, str], str], parent: str = "") -> None:
    if isinstance(node, list):
        for item in node:
            _replace_files(item, put, parent)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in SINGLE_FILES and isinstance(value, str) and value:
            node[key] = put(value, key)
        elif key in FILE_MAPS and isinstance(value, dict):
            node[key] = {n: put(v, n) if isinstance(v, str) and v else v for n, v in value.items()}
        elif key == "exports" and isinstance(value, dict):
            for export in value.values():
                if isinstance(export, dict) and isinstance(export.get("content"), str):
                    export["content"] = put(export["content"], str(export.get("fileName") or "export"))
        else:
            _replace_files(value, put, key)


def _safe_name(name: str, data: bytes) -> str:
    """A file name from a field's name or path, with the extension its bytes call for."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit("/", 1)[-1]).strip("._") or "file"
    stem = stem.rsplit(".", 1)[0][:120]
    if data[:3] == b"\xff\xd8\xff":
        return f"{stem}.jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return f"{stem}.png"
    if data[:2] == b"PK":
        return f"{stem}.docx"
    return f"{stem}.bin"


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 1
    while candidate in taken:
        stem, _, suffix = name.rpartition(".")
        candidate = f"{stem}-{number}.{suffix}"
        number += 1
    taken.add(candidate)
    return candidate


def new_token() -> str:
    """A folder name nobody can guess: 128 random bits."""
    return secrets.token_urlsafe(16)


FILES = web.AppKey("files", FileStore)


def file_response(store: FileStore, token: str, name: str) -> web.FileResponse:
    path = store.path_of(token, name)
    if path is None:
        raise RequestError(404, "No such file (its link is wrong or has expired)")
    media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": media, "Cache-Control": "private, max-age=3600"})


async def serve_file(request: web.Request) -> web.StreamResponse:
    return file_response(request.app[FILES], request.match_info["token"], request.match_info["name"])


def add_file_routes(app: web.Application, store: FileStore) -> None:
    """``GET /files/<token>/<name>`` and the minute's sweep, for the app's lifetime."""
    app[FILES] = store
    app.router.add_get(PREFIX + "{token}/{name}", serve_file)

    async def sweeping(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(SWEEP_EVERY_S)
                await asyncio.to_thread(store.sweep)

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    app.cleanup_ctx.append(sweeping)


def public_base(request: web.Request, serving: ServingSettings) -> str:
    """The scheme and host clients reach this server at: ``Serving.public_url``, else the request's
    own (its Host header, or a proxy's ``X-Forwarded-Proto``/``-Host`` when ``jobs.trust_forwarded``)."""
    if serving.public_url:
        return serving.public_url.rstrip("/")
    if serving.jobs.trust_forwarded:
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
        if scheme in ("http", "https") and re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", host):
            return f"{scheme}://{host}"
    return str(request.url.origin())
