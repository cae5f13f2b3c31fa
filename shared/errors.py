"""Errors that become an envelope with a chosen HTTP status, never a 500."""

from __future__ import annotations

import re

_NAMED_ERROR = re.compile(r"[A-Z]\w*(Error|Exception): ")


class RequestError(Exception):
    """A client-visible failure: ``status`` is the HTTP status and errorCode."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def invalid(field: str, message: str) -> RequestError:
    """A 422 that names the field, as PaddleX's validation errors do."""
    return RequestError(422, f"{field}: {message}")


def one_line(exc: BaseException) -> str:
    """One log line for an engine error.

    Engines wrap the useful part in pages of context: Paddle starts with
    "In user code:" and buries "InvalidArgumentError: ..." below it. Prefer
    the first line that names an error, else the first line that is not a
    heading.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = next((line for line in lines if _NAMED_ERROR.match(line)), None)
    if named is not None:
        return named
    first = next((line for line in lines if not line.endswith(":")), lines[0] if lines else "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
