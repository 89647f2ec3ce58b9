"""Accepting a submission: score it and store it; reading one back.

The hot path uses SQLAlchemy Core on a Connection: the ORM unit of work and
instrumented objects cost several times more CPU per request (bench/README.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import Connection, insert, select

from gpuq.clock import to_millis
from gpuq.errors import NotFound
from gpuq.scoring import METRICS, Profile, score
from gpuq.store.models import Submission

TABLE = Submission.__table__
_INSERT = insert(TABLE).returning(TABLE.c.id)
_COLUMNS = [c for c in TABLE.c if c.name != "client_address"]


@dataclasses.dataclass(frozen=True)
class StoredSubmission:
    """A stored submission as the API shows it (the client address stays private)."""

    id: int
    metrics: Mapping[str, Decimal]
    points: Mapping[str, Decimal]
    score: Decimal
    profile_version: int
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> StoredSubmission:
        return cls(
            id=row["id"],  # type: ignore[arg-type]
            metrics={name: row[name] for name in METRICS},  # type: ignore[misc]
            points={name: row[f"points_{name}"] for name in METRICS},  # type: ignore[misc]
            score=row["score"],  # type: ignore[arg-type]
            profile_version=row["profile_version"],  # type: ignore[arg-type]
            created_at=row["created_at"],  # type: ignore[arg-type]
        )


def record(
    connection: Connection,
    metrics: Mapping[str, Decimal],
    profile: Profile,
    profile_version: int,
    client_address: str,
    now: dt.datetime,
) -> StoredSubmission:
    """Score validated `metrics` and insert the row; returns it with its id.

    Never commits: on an autocommit connection the INSERT is its own
    transaction, durable when this returns; otherwise the caller commits.
    """
    result = score(metrics, profile)
    values = {
        **{name: metrics[name] for name in METRICS},
        **{f"points_{name}": result.points[name] for name in METRICS},
        "score": result.total,
        "profile_version": profile_version,
        "client_address": client_address[:64],
        "created_at": to_millis(now),
    }
    submission_id = connection.execute(_INSERT, values).scalar_one()
    return StoredSubmission.from_row({**values, "id": submission_id})


def get(connection: Connection, submission_id: int) -> StoredSubmission:
    """The stored submission; raises NotFound."""
    row = connection.execute(select(*_COLUMNS).where(TABLE.c.id == submission_id)).mappings().first()
    if row is None:
        raise NotFound(f"no submission with id {submission_id}")
    return StoredSubmission.from_row(row)
