"""Errors that name the problem, for packages and requests."""

from __future__ import annotations


class KaizenError(Exception):
    """Base class of Kaizen's own errors."""


class PackageError(KaizenError):
    """A model package is malformed, inconsistent, corrupt or unsafe to load."""


class RequestError(KaizenError):
    """A prediction request is malformed; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
