"""A whole document's Markdown from its pages' entries (PaddleX answers one page at a time).

Each page's entry carries ``markdown: {text, images, isStart, isEnd}``. A
paragraph that runs over a page break ends the page without ending itself
(``isEnd`` false) and starts the next page without a start (``isStart``
false): the two halves are joined into one paragraph, as PaddleX's clients
do with ``concatenate_markdown_pages``. Images keep their relative paths
(``imgs/...``), unique per page (their page number goes in front).

Two writers, chosen by the client's Accept header (see
frontend/page_answers.py): :class:`MarkdownDocument` (``text/markdown``: the
text alone, made when the last page is in) and :class:`MarkdownZip`
(``application/zip``: ``document.md`` and ``imgs/``, written to the client
page by page, so the server holds one page's images at a time).
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any, ClassVar

import pybase64

DOCUMENT_NAME = "document.md"
_HYPHENATED = re.compile(r"[A-Za-z]-$")
_IMAGE_PATH = re.compile(r"(?<=[\"(])imgs/")


def join_pages(first: str, second: str, first_ends: bool, second_starts: bool) -> str:
    """Two pages' Markdown as one: a paragraph split by the page break is joined again."""
    first, second = first.rstrip("\n"), second.lstrip("\n")
    if not first or not second:
        return first or second
    if first_ends or second_starts:
        return f"{first}\n\n{second}"
    if _HYPHENATED.search(first) and second[:1].islower():
        return first[:-1] + second  # a word hyphenated across the break
    if is_wide(first[-1]) or is_wide(second[0]):
        return first + second  # Chinese and Japanese run on without a space
    return f"{first} {second}"


def is_wide(character: str) -> bool:
    """A CJK or full-width character: text in them runs on without spaces."""
    return "\u2e80" <= character <= "\u9fff" or "\uff00" <= character <= "\uffef"


def page_images(entry: dict[str, Any], page: int) -> tuple[str, dict[str, str]]:
    """A page's Markdown text and images, its image paths made unique in the document."""
    markdown = entry.get("markdown") or {}
    text, images = str(markdown.get("text") or ""), dict(markdown.get("images") or {})
    if not images:
        return text, images
    prefix = f"imgs/page{page + 1}_"
    return _IMAGE_PATH.sub(prefix, text), {
        prefix + path.removeprefix("imgs/"): b64 for path, b64 in images.items()
    }


class MarkdownDocument:
    """``text/markdown``: the whole document's text (images by reference only; ask for a zip for them)."""

    media_type: ClassVar[str] = "text/markdown; charset=utf-8"
    summary: ClassVar[str] = (
        "the whole document as Markdown, pages joined where a paragraph runs over the break "
        "(pictures referenced by their imgs/ paths)"
    )
    streams: ClassVar[bool] = False

    def __init__(self, data_info: dict[str, Any]) -> None:
        self.text = ""
        self.ends = True
        self.pages = 0

    def add(self, entry: dict[str, Any]) -> bytes:
        markdown = entry.get("markdown") or {}
        text, _ = page_images(entry, self.pages)
        self.text = join_pages(self.text, text, self.ends, bool(markdown.get("isStart", True)))
        self.ends = bool(markdown.get("isEnd", True))
        self.pages += 1
        return b""

    def finish(self) -> bytes:
        return (self.text.rstrip("\n") + "\n").encode() if self.text else b""

    def fail(self, status: int, message: str) -> bytes:
        return b""


class _Sink(io.RawIOBase):
    """Where the zip writes: bytes collected until taken, and the offset zipfile asks for.
    Not seekable, so zipfile writes each entry's sizes after its data."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        self.offset += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.offset

    def take(self) -> bytes:
        taken, self.chunks = b"".join(self.chunks), []
        return taken


class MarkdownZip:
    """``application/zip``: ``imgs/`` written as each page arrives, then ``document.md``."""

    media_type: ClassVar[str] = "application/zip"
    summary: ClassVar[str] = "a zip of document.md and its imgs/, written as the pages finish"
    streams: ClassVar[bool] = True

    def __init__(self, data_info: dict[str, Any]) -> None:
        self.sink = _Sink()
        self.archive = zipfile.ZipFile(self.sink, "w", compression=zipfile.ZIP_STORED)
        self.document = MarkdownDocument(data_info)

    def add(self, entry: dict[str, Any]) -> bytes:
        _, images = page_images(entry, self.document.pages)
        self.document.add(entry)
        for path, b64 in images.items():
            self.archive.writestr(path, pybase64.b64decode(b64))  # JPEGs: stored, not compressed
        return self.sink.take()

    def finish(self) -> bytes:
        self.archive.writestr(DOCUMENT_NAME, self.document.finish(), compress_type=zipfile.ZIP_DEFLATED)
        self.archive.close()
        return self.sink.take()

    def fail(self, status: int, message: str) -> bytes:
        """The archive ends with what was read and ``ERROR.txt`` saying why the rest is missing."""
        note = f"{status}: {message}\nThe document stops at page {self.document.pages + 1}.\n"
        self.archive.writestr("ERROR.txt", note)
        return self.finish()
