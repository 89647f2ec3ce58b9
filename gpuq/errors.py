"""Domain exceptions. Each carries the data its HTTP answer needs; `api/errors.py`
maps them to problem+json in one place."""

from __future__ import annotations

import dataclasses
from typing import Any


class GpuqError(Exception):
    """Base of every domain error."""


@dataclasses.dataclass
class FieldError:
    """One problem with one input field; `field` is a dotted path ("" for the whole body)."""

    field: str
    message: str


class InvalidInput(GpuqError):
    """The request is malformed (400) or well-formed but unacceptable (422)."""

    def __init__(self, detail: str, errors: list[FieldError] | None = None, status: int = 422):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.status = status


class Refused(GpuqError):
    """A refusal whose answer is its status and `detail` (the subclass says which status)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(Refused):
    """No such thing (404)."""


class RateLimited(GpuqError):
    """A rate limit is used up; `usage` says when to retry (a gpuq.ratelimit.Usage), `scope`
    which limit it was ("daily", "submit", "participant", "keyed" from gpuq.ratelimit; "streams" from
    gpuq.live.caps)."""

    def __init__(self, description: str, usage: Any, scope: str):
        super().__init__(f"{description} exceeded")
        self.description = description
        self.usage = usage
        self.scope = scope


class Unavailable(GpuqError):
    """A dependency the request needs is down; retry after `retry_after` seconds."""

    def __init__(self, detail: str, retry_after: int = 5):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class Unauthorized(Refused):
    """No valid API key where one is needed (401, with WWW-Authenticate: Bearer)."""


class Forbidden(Refused):
    """A valid key that may not do this (403)."""


class Conflict(Refused):
    """The request contradicts what is stored (409), e.g. a name already taken."""


class EvidenceRefused(GpuqError):
    """A run's evidence that is not accepted at all, so nothing is stored: `code` is the
    rule's stable code (gpuq.evidence.checks.CODES), `status` the HTTP status."""

    def __init__(self, code: str, status: int, detail: str):
        super().__init__(detail)
        self.code = code
        self.status = status
        self.detail = detail
