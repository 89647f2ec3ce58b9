"""HTTP to the gpuq server: the standard library only.

Every POST carries an Idempotency-Key (one per logical request, the same on each
retry), so a retry never submits twice. Retried, after the server's Retry-After (or
a short back-off, at most a minute): 429, 503 and connection errors, in all at most
`attempts` tries. A problem answer (application/problem+json) becomes ApiError with
the server's own words. The API key is never sent on to a redirect's target.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from gpuq_agent import AGENT

RETRIED = (429, 503)


class ApiError(RuntimeError):
    """The server refused (a 4xx or 5xx), or could not be reached."""

    def __init__(self, status: int | None, title: str, detail: str, body: dict[str, Any] | None = None):
        super().__init__(f"{status or 'no answer'} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.body = body or {}


class Client:
    def __init__(
        self,
        server: str,
        key: str | None,
        attempts: int = 5,
        timeout: float = 30.0,
        sleep: Callable[[float], None] | None = None,
        note: Callable[[str], None] = lambda _message: None,
    ):
        self.server = server.rstrip("/")
        self.key = key
        self.attempts = attempts
        self.timeout = timeout
        self._sleep = sleep or time.sleep
        self._note = note

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body, idempotency_key=uuid.uuid4().hex)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, idempotency_key: str | None = None
    ) -> Any:
        """The decoded JSON answer; raises ApiError once retries are used up or on a refusal."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(f"{self.server}{path}", data=data, method=method)
            request.add_header("User-Agent", AGENT)
            request.add_header("Accept", "application/json")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            if idempotency_key is not None:
                request.add_header("Idempotency-Key", idempotency_key)
            if self.key:  # never sent on to wherever a redirect points
                request.add_unredirected_header("Authorization", f"Bearer {self.key}")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    text = answer.read().decode()
                    return json.loads(text) if text else None
            except urllib.error.HTTPError as exc:
                error = _problem(exc)
                wait = _retry_after(exc.headers.get("Retry-After"), attempt)
                exc.close()
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
                reason = getattr(exc, "reason", exc)
                error = ApiError(None, "the server could not be reached", str(reason))
                wait = _retry_after(None, attempt)
            refused = error.status is not None and error.status not in RETRIED
            if refused or attempt == self.attempts or wait == float("inf"):
                raise error
            self._note(f"{error}; retrying in {wait:g} s")
            self._sleep(wait)
        raise AssertionError("unreachable")

    def stream(self, path: str) -> Iterator[tuple[str, Any]]:
        """Server-sent events from `path` as (event, data) pairs, until the server ends it."""
        request = urllib.request.Request(f"{self.server}{path}", headers={"Accept": "text/event-stream"})
        if self.key:
            request.add_unredirected_header("Authorization", f"Bearer {self.key}")
        try:
            answer = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise _problem(exc) from None
        with answer:
            event, data = "message", list[str]()
            for raw in answer:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        yield event, json.loads("\n".join(data))
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())


def _problem(exc: urllib.error.HTTPError) -> ApiError:
    try:
        body = json.loads(exc.read().decode() or "{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(exc.code, str(body.get("title", exc.reason)), str(body.get("detail", "")), body)


MAX_WAIT_SECONDS = 60.0
"""The longest wait before a retry: a longer Retry-After (an hour's limit used up) is
reported rather than slept through (a run's ticket would expire meanwhile)."""


def _retry_after(header: str | None, attempt: int) -> float:
    """The server's Retry-After (seconds), else an exponential back-off: 1, 2, 4, ... s;
    infinite when that is longer than MAX_WAIT_SECONDS (then the error is raised)."""
    wait = float(min(MAX_WAIT_SECONDS, 2 ** (attempt - 1)))
    if header is not None:
        with contextlib.suppress(ValueError):  # an HTTP-date: keep the back-off
            wait = max(0.0, float(header))
    return wait if wait <= MAX_WAIT_SECONDS else float("inf")
