"""The fair-use limits at the HTTP edge: who the client is, the daily limit taken before each
view, and the headers that report usage (the limits themselves: gpuq.ratelimit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, Response, g, request

from gpuq.api import auth
from gpuq.errors import GpuqError
from gpuq.ratelimit import RateLimits, Usage

View = TypeVar("View", bound=Callable[..., object])

SELF_LIMITED = {"submissions.submit_qualification", "runs.submit_evidence"}
"""Endpoints that take the daily limit themselves (after telling replays apart), with
`RateLimits.take_daily`."""


def client_address() -> str:
    """The address quotas are counted against: the socket peer, or with GPUQ_TRUSTED_PROXIES=N
    the address werkzeug's ProxyFix took N hops back in X-Forwarded-For."""
    return request.remote_addr or "unknown"


def caller_id() -> int | None:
    """The participant whose daily limit a request uses, or None for the address's: a request
    with a bad key counts against its address (the view then answers 401)."""
    try:
        member = auth.caller()
    except GpuqError:
        return None
    return None if member is None else member.id


def exempt(view: View) -> View:
    """Mark a view as outside every limit."""
    # A marker attribute on the function, read when the exempt endpoints are collected.
    view._gpuq_exempt = True  # type: ignore[attr-defined]
    return view


def report(usage: Usage | None) -> None:
    """Report `usage` in this response's rate-limit headers."""
    if usage is not None:
        g.gpuq_rate_usage = usage


def init_app(app: Flask, limits: RateLimits) -> None:
    """Take the daily limit before each limited view; add the headers after every response."""
    exempt_endpoints: set[str] = set()

    @app.before_request
    def take_daily() -> None:
        if not exempt_endpoints:  # filled on the first request, once every route is registered
            exempt_endpoints.update(
                name for name, view in app.view_functions.items() if getattr(view, "_gpuq_exempt", False)
            )
            exempt_endpoints.add("static")
        endpoint = request.endpoint
        if endpoint is None or endpoint in exempt_endpoints or endpoint in SELF_LIMITED:
            return
        if g.get("gpuq_unlimited"):  # an admin (gpuq.api.auth)
            return
        report(limits.take_daily(client_address(), caller_id(), report=True))

    app.after_request(add_headers)


def add_headers(response: Response) -> Response:
    """X-RateLimit-Limit/Remaining/Reset on every limited response; Retry-After on 429."""
    usage: Usage | None = g.get("gpuq_rate_usage")
    if usage is not None:
        response.headers["X-RateLimit-Limit"] = str(usage.limit)
        response.headers["X-RateLimit-Remaining"] = str(usage.remaining)
        response.headers["X-RateLimit-Reset"] = str(usage.reset_at)
        if response.status_code == 429:
            response.headers["Retry-After"] = str(usage.retry_after)
    return response
