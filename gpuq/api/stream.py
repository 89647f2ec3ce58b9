"""GET /leaderboard/stream: the live board as Server-Sent Events (exempt from rate limits).

On connect: a `snapshot` event (leaders, score histogram, records, slots);
then `submission` and `leaderboard` events as they happen on any worker; a
comment line every heartbeat; the stream ends after Settings.stream_max_seconds
(EventSource reconnects by itself, and a reconnect, with or without
Last-Event-ID, starts with a fresh snapshot).

Caps: Settings.streams_per_address open streams per client address (429,
counted in Redis across workers when configured) and
Settings.streams_per_worker per worker process (503).
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request

from gpuq.api import spec
from gpuq.api.context import runtime
from gpuq.api.limits import client_address, exempt
from gpuq.live import board
from gpuq.live.bus import CLOSED, Event

bp = Blueprint("stream", __name__)


def sse(event: str, data: Any, event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


@bp.get("/leaderboard/stream")
@exempt
def leaderboard_stream() -> Response:
    if request.method == "HEAD":  # the headers only: no stream is opened, nothing is counted
        return _stream_response(iter(()))
    services = runtime()
    settings, bus, caps = services.settings, services.bus, services.stream_caps
    ticket = caps.acquire(client_address())
    subscription = None
    try:
        subscription = bus.subscribe()
        snapshot = board.snapshot(
            services.board,
            services.database.autocommit,
            settings.board_size,
            services.summaries,
            services.slots.pool,
        )
    except BaseException:
        if subscription is not None:
            bus.unsubscribe(subscription)
        ticket.release()
        raise

    def generate() -> Iterator[str]:
        try:
            yield "retry: 2000\n\n"
            yield sse("snapshot", snapshot, f"snapshot-{int(time.time() * 1000)}")
            deadline = time.monotonic() + settings.stream_max_seconds
            while (left := deadline - time.monotonic()) > 0:
                ticket.renew()  # keeps this stream counted (gpuq.live.caps)
                try:
                    item = subscription.get(timeout=min(settings.stream_heartbeat_seconds, left))
                except queue.Empty:
                    yield ": heartbeat\n\n"
                    continue
                if item is CLOSED:
                    return
                assert isinstance(item, Event)
                yield sse(item.type, item.data, item.id)
        finally:
            end()  # also here: a response dropped before it is closed must not keep its slot

    def end() -> None:
        assert subscription is not None
        bus.unsubscribe(subscription)
        ticket.release()

    # The server closes every response it started, also one whose body it never iterated
    # (a client gone before the first byte); `end` may run twice, which is harmless (the
    # ticket releases once, unsubscribing twice is a no-op).
    response = _stream_response(generate())
    response.call_on_close(end)
    return response


def _stream_response(body: Iterator[str]) -> Response:
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # proxies must not hold events back
    return response


# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/leaderboard/stream", "get"): {
        "operationId": "leaderboardStream",
        "summary": "The live board as Server-Sent Events",
        "description": "A `snapshot` event on connect (leaders, score histogram, records, slots), then "
        "`submission` and `leaderboard` events; a comment line as heartbeat. Reconnecting clients get a "
        "fresh snapshot.",
        "tags": ["leaderboard"],
        "responses": {
            "200": {
                "description": "An event stream",
                "content": {
                    "text/event-stream": {
                        "schema": {"description": "Server-Sent Events; each data line is JSON"}
                    }
                },
            },
            "429": spec.problem("Too many open streams from this address."),
            "503": spec.problem(
                "This worker holds as many streams as it may.", **{"Retry-After": "Seconds to wait."}
            ),
            "500": spec.SERVER_ERROR,
        },
    },
}
