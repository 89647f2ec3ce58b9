"""The clock: one injectable source of "now" (timezone-aware UTC), so tests can freeze time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso_z(moment: dt.datetime) -> str:
    """RFC 3339 UTC with milliseconds and a Z, as the specification shows: 2025-01-11T16:58:19.862Z."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_millis(moment: dt.datetime) -> dt.datetime:
    """Drop sub-millisecond digits: stored times are what the API shows, in every store."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
