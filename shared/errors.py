"""Errors that become an envelope with a chosen HTTP status, never a 500."""

from __future__ import annotations


class RequestError(Exception):
    """A client-visible failure: ``status`` is the HTTP status and errorCode."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def invalid(field: str, message: str) -> RequestError:
    """A 422 that names the field, as PaddleX's validation errors do."""
    return RequestError(422, f"{field}: {message}")
