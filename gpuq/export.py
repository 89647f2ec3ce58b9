"""The export: every submission with its metrics, points, score, profile version,
status, provenance, GPU model, flags (codes separated by spaces) and places on both
leaderboard views, streamed as CSV or JSON.

Rows come in leaderboard order (the ranked submissions by gpuq.leaderboard.rule,
then the unranked ones), read through a server-side cursor in batches, so the
export of a million rows never sits in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, select

from gpuq.clock import iso_z
from gpuq.leaderboard import rule
from gpuq.scoring import METRICS
from gpuq.store import tables
from gpuq.submissions.store import STATUS_ACTIVE, STATUS_DISQUALIFIED

TABLE = tables.SUBMISSIONS
PARTICIPANTS = tables.PARTICIPANTS
FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
BATCH = 1000

FIELDS = (
    "submission_id",
    "rank_all",
    "rank_best",
    "participant",
    "status",
    "participant_disqualified",
    "disqualify_reason",
    "provenance",
    "gpu_model",
    "withheld",
    "flags",
    *METRICS,
    *(f"points_{m}" for m in METRICS),
    "score",
    "profile_version",
    "submitted_at",
)

_ROWS = (
    select(
        TABLE,
        PARTICIPANTS.c.name.label("participant"),
        PARTICIPANTS.c.disqualified_at.label("participant_disqualified_at"),
    )
    .outerjoin(PARTICIPANTS, PARTICIPANTS.c.id == TABLE.c.participant_id)
    .order_by(TABLE.c.ranked.desc(), *rule.order(TABLE.c.score, TABLE.c.id))
)


def rows(connection: Connection) -> Iterator[dict[str, Any]]:
    """Every submission as a flat record of FIELDS (numbers as strings, exact)."""
    rank_all = rank_best = 0
    result = connection.execution_options(stream_results=True, yield_per=BATCH).execute(_ROWS)
    for row in result.mappings():
        if row["ranked"]:
            rank_all += 1
        if row["leads"]:
            rank_best += 1
        yield {
            "submission_id": row["id"],
            "rank_all": rank_all if row["ranked"] else None,
            "rank_best": rank_best if row["leads"] else None,
            "participant": row["participant"],
            "status": STATUS_ACTIVE if row["disqualified_at"] is None else STATUS_DISQUALIFIED,
            "participant_disqualified": row["participant_disqualified_at"] is not None,
            "disqualify_reason": row["disqualify_reason"],
            "provenance": row["provenance"],
            "gpu_model": row["gpu_model"],
            "withheld": row["withheld"],
            "flags": " ".join(json.loads(row["flags"])) if row["flags"] else "",
            **{m: str(row[m]) for m in METRICS},
            **{f"points_{m}": str(row[f"points_{m}"]) for m in METRICS},
            "score": str(row["score"]),
            "profile_version": row["profile_version"],
            "submitted_at": iso_z(row["created_at"]),
        }


def as_csv(records: Iterator[dict[str, Any]]) -> Iterator[str]:
    """A header line, then one line per record."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, FIELDS, lineterminator="\n")
    writer.writeheader()
    for count, record in enumerate(records, start=1):
        writer.writerow({k: _csv_value(v) for k, v in record.items()})
        if count % BATCH == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _csv_value(value: Any) -> Any:
    """Booleans as JSON writes them (true/false), so that both formats read alike."""
    return ("true" if value else "false") if isinstance(value, bool) else value


def as_json(records: Iterator[dict[str, Any]], header: dict[str, Any]) -> Iterator[str]:
    """One JSON object: `header`'s fields, then "submissions": [...], written a record at a time."""
    opening = json.dumps(header, separators=(",", ":"))[:-1]
    yield f'{opening},"submissions":['
    for count, record in enumerate(records):
        yield ("," if count else "") + json.dumps(record, separators=(",", ":"))
    yield "]}"


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def stream(connect: Callable[[], Connection], fmt: str, header: dict[str, Any]) -> Iterator[str]:
    """The export in `fmt` ("csv" or "json"), holding one connection while it streams."""
    with connect() as connection:
        records = rows(connection)
        yield from as_csv(records) if fmt == "csv" else as_json(records, header)
