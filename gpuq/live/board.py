"""What the live stream says: the snapshot, and the events an accepted submission causes.

Pure assembly on top of the leaderboard and the event bus; the HTTP framing
(Server-Sent Events) is in gpuq/api/stream.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, func, select

from gpuq.clock import iso_z
from gpuq.leaderboard import Entry, Leaderboard
from gpuq.live.bus import EventBus
from gpuq.serialize import entry, number
from gpuq.store.models import Submission

log = logging.getLogger(__name__)

HISTOGRAM_BUCKETS = 10
"""Scores are counted in buckets of 10 points: [0,10), [10,20), ... [90,100]."""
MAX_RECORDS = 200


def top(board: Leaderboard, size: int) -> dict[str, Any]:
    page = board.page(0, size)
    return {"leaderboard": [entry(i + 1, item) for i, item in enumerate(page.entries)], "total": page.total}


def bucket_of(score: Any) -> int:
    """The histogram bucket of a score (one rule, used by the server and mirrored by board.js)."""
    return min(int(score // 10), HISTOGRAM_BUCKETS - 1)


def histogram(connection: Connection) -> list[int]:
    """How many submissions scored in each 10-point bucket (100 counts in the last).

    Grouped by exact score (at most 10,001 values) and bucketed here: the same
    on both databases, whose integer casts round differently.
    """
    counts = [0] * HISTOGRAM_BUCKETS
    for score, count in connection.execute(
        select(Submission.score, func.count()).where(Submission.ranked).group_by(Submission.score)
    ):
        counts[bucket_of(score)] += count
    return counts


def records(connection: Connection) -> list[dict[str, Any]]:
    """The best score over time: each submission that beat every earlier one (latest MAX_RECORDS).

    One pass with a window function (running maximum of the earlier scores).
    """
    best_before = (
        func.max(Submission.score).over(order_by=Submission.id, rows=(None, -1)).label("best_before")
    )
    ordered = (
        select(Submission.id, Submission.created_at, Submission.score, best_before)
        .where(Submission.ranked)
        .subquery()
    )
    rows = connection.execute(
        select(ordered.c.created_at, ordered.c.score)
        .where((ordered.c.best_before.is_(None)) | (ordered.c.score > ordered.c.best_before))
        .order_by(ordered.c.id.desc())
        .limit(MAX_RECORDS)
    ).all()
    return [{"at": iso_z(at), "score": number(score)} for at, score in reversed(rows)]


class Summaries:
    """The histogram and records, computed once per board state and shared by new streams.

    Keyed by the board's total and index version: every accepted submission
    changes the version (with Redis), or the total (of view best, without).
    """

    def __init__(self) -> None:
        self._key: object = None
        self._value: dict[str, Any] = {}

    def get(self, key: object, connect: Callable[[], Connection]) -> dict[str, Any]:
        if self._key != key:
            with connect() as connection:
                value = {"histogram": histogram(connection), "records": records(connection)}
            self._key, self._value = key, value
        return self._value


def snapshot(
    board: Leaderboard,
    connect: Callable[[], Connection],
    size: int,
    summaries: Summaries,
    slot_pool: Callable[[], list[dict[str, Any]]],
) -> dict[str, Any]:
    """Everything a new viewer needs: the leaders, the score histogram, the records, the slots."""
    leaders = top(board, size)
    summary = summaries.get((leaders["total"], board.version()), connect)
    return {**leaders, **summary, "slots": slot_pool()}


def announce(
    bus: EventBus, board: Leaderboard, item: Entry, rank: int | None, size: int, leads: bool = True
) -> None:
    """Publish what an accepted submission changed; never raises (the submission is stored).

    `rank` is its rank in view all (None when unranked); the board shows view
    best, which only a leading submission can change.
    """
    try:
        bus.publish(
            "submission",
            {
                "submission_id": item.submission_id,
                "score": number(item.score),
                "rank": rank,
                "participant": item.participant,
                "submitted_at": iso_z(item.submitted_at),
            },
        )
        # A leading entry's rank in view best is at most its rank in view all.
        if leads and rank is not None and (rank <= size or board.rank(item, "best") <= size):
            bus.publish("leaderboard", top(board, size))
    except Exception:
        log.exception("could not announce submission %s", item.submission_id)
