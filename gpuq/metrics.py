"""Every metric the service exports, defined here and nowhere else, in Prometheus's text
format at GET /metrics (gpuq.api.observe).

The domain code calls the small functions below (`submission_accepted()`,
`slot_changed("grant")`, ...); none of it touches a metric object. Labels are
fixed vocabularies (routes, methods, statuses, scopes, reasons, actions, kinds,
parts): **no label ever carries a participant, an id or an address**, so the
number of series stays bounded whatever clients send.

Across gunicorn workers: the server (gpuq.server) sets PROMETHEUS_MULTIPROC_DIR
before anything imports prometheus_client when it runs more than one worker;
then every process writes its values to its own memory-mapped files there and
a scrape, answered by any worker, sums them all (`exposition`). Open streams
are a `livesum` gauge: a worker that exits stops counting (gunicorn's child_exit
hook calls `mark_process_dead`). Counters of an exited worker stay in the sum,
so totals never go down while the server runs. Without that directory (one
worker, the embedded mode, the in-process test client) the default registry of
this process is exported, with the process and Python collectors besides.

Metric names follow Prometheus's conventions: the `gpuq_` prefix, base units,
`_total` for counters (prometheus_client adds it), `_seconds` for durations.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# No `_created` series: multiprocess mode cannot have them, so one worker exports what many do.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "gpuq_http_requests",
    "HTTP requests answered, by route (the URL rule, e.g. /submissions/<int:submission_id>; "
    "'unmatched' when no route matched), method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "gpuq_http_request_duration_seconds",
    "Time to answer a request, from routing to the response (streamed responses such as "
    "the live stream and the export are counted in gpuq_http_requests_total but not timed).",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SUBMISSIONS_ACCEPTED = Counter(
    "gpuq_submissions_accepted", "Submissions stored (committed) and answered 201; replays not included."
)
SUBMISSIONS_REPLAYED = Counter(
    "gpuq_submissions_replayed",
    "Retries of a finished idempotent submission, answered with the first answer (nothing stored).",
)
SUBMISSIONS_REFUSED = Counter(
    "gpuq_submissions_refused",
    "Submissions refused, by reason: malformed (400), unauthorized (401), forbidden (403, a "
    "disqualified participant), in_flight (409), too_large (413), unsupported_media_type (415), "
    "invalid (422), rate_limited (429), unavailable (503), error (any other).",
    ["reason"],
)
RATE_LIMITED = Counter(
    "gpuq_rate_limit_refusals",
    "Requests refused by a limit, by scope: daily, submit, participant, keyed, streams.",
    ["scope"],
)
INDEX_REBUILDS = Counter(
    "gpuq_leaderboard_index_rebuilds", "Rebuilds of the Redis leaderboard index from the database."
)
INDEX_FALLBACKS = Counter(
    "gpuq_leaderboard_database_fallbacks",
    "Leaderboard reads answered by the database instead of the Redis index (index stale, "
    "incomplete, unreachable, or the entry not indexed yet), by read: page or rank.",
    ["read"],
)
STREAMS_OPEN = Gauge(
    "gpuq_streams_open",
    "Live streams (GET /leaderboard/stream) open now, over all live workers.",
    multiprocess_mode="livesum",
)
SLOT_CHANGES = Counter(
    "gpuq_slot_changes",
    "Changes of GPU slot leases, by action: grant, offer, accept, release, expiry, decline, revocation.",
    ["action"],
)
DATABASE_ERRORS = Counter(
    "gpuq_database_errors",
    "Database calls that failed, by kind: unavailable (connection lost or refused, a "
    "timeout), read_only (a write refused by a read-only database), pool_timeout (no "
    "pooled connection free in time).",
    ["kind"],
)
REDIS_ERRORS = Counter(
    "gpuq_redis_errors",
    "Redis calls that failed (timeouts, refused or lost connections), by the part that made "
    "them: leaderboard_index, rate_limits, submission_limits, event_bus, event_subscription, "
    "stream_caps.",
    ["part"],
)
BUILD = Gauge(
    "gpuq_build_info",
    "Always 1; the labels say which build answers (the package version, the source commit).",
    ["version", "commit"],
    multiprocess_mode="max",
)

# Children of the request metrics by their labels: prometheus_client's labels() validates
# and locks on each call, a dict hit is a tenth of that (measured: 1.4 µs against 0.1 µs).
_request_counters: dict[tuple[str, str, int], Counter] = {}
_request_timers: dict[tuple[str, str], Histogram] = {}


def request_observed(route: str, method: str, status: int, seconds: float | None) -> None:
    """One answered request; `seconds` None for a streamed response (counted, not timed).
    `route` and `method` must come from fixed sets (the URL rules, the known methods)."""
    counter = _request_counters.get((route, method, status))
    if counter is None:
        counter = _request_counters[(route, method, status)] = REQUESTS.labels(route, method, str(status))
    counter.inc()
    if seconds is not None:
        timer = _request_timers.get((route, method))
        if timer is None:
            timer = _request_timers[(route, method)] = LATENCY.labels(route, method)
        timer.observe(seconds)


def submission_accepted() -> None:
    SUBMISSIONS_ACCEPTED.inc()


def submission_replayed() -> None:
    SUBMISSIONS_REPLAYED.inc()


def submission_refused(reason: str) -> None:
    SUBMISSIONS_REFUSED.labels(reason).inc()


def rate_limited(scope: str) -> None:
    RATE_LIMITED.labels(scope).inc()


def index_rebuilt() -> None:
    INDEX_REBUILDS.inc()


def index_fallback(read: str) -> None:
    """A leaderboard `read` ("page" or "rank") answered from the database, not the index."""
    INDEX_FALLBACKS.labels(read).inc()


def stream_opened() -> None:
    STREAMS_OPEN.inc()


def stream_closed() -> None:
    STREAMS_OPEN.dec()


def slot_changed(action: str) -> None:
    SLOT_CHANGES.labels(action).inc()


def database_error(kind: str) -> None:
    DATABASE_ERRORS.labels(kind).inc()


def redis_error(part: str) -> None:
    REDIS_ERRORS.labels(part).inc()


def multiprocess_dir() -> str | None:
    """The directory the processes share their values through, or None (this process only)."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(version: str, commit: str | None) -> tuple[bytes, str]:
    """Every metric in Prometheus's text format, and its Content-Type: summed over every
    process of the server in multiprocess mode, else this process's."""
    BUILD.labels(version, commit or "unknown").set(1)
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()  # a fresh one per scrape, as multiprocess mode requires
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated upstream
    return generate_latest(registry), CONTENT_TYPE_LATEST
