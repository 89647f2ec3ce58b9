"""The audit trail: every admin action, who did it, when, and the state before and after.

Written in the same transaction as the change it records, so that a change
and its record exist together or not at all.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Connection, func, insert, select

from gpuq.clock import iso_z
from gpuq.store import tables

TABLE = tables.AUDIT_EVENTS
CLI_ACTOR = "cli"


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def record(
    connection: Connection,
    actor: str,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str | None,
    moment: dt.datetime,
) -> None:
    """Add one event (does not commit). `before`/`after` are JSON-able states, None for "did not exist"."""
    connection.execute(
        insert(TABLE).values(
            actor=actor[:64],
            action=action,
            target=target[:128],
            before=_json(before),
            after=_json(after),
            reason=reason,
            created_at=moment,
        )
    )


def page(connection: Connection, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Events newest first, and how many there are."""
    rows = connection.execute(
        select(TABLE).order_by(TABLE.c.id.desc()).offset(offset).limit(limit)
    ).mappings()
    events = [
        {
            "id": row["id"],
            "at": iso_z(row["created_at"]),
            "actor": row["actor"],
            "action": row["action"],
            "target": row["target"],
            "before": None if row["before"] is None else json.loads(row["before"]),
            "after": None if row["after"] is None else json.loads(row["after"]),
            "reason": row["reason"],
        }
        for row in rows
    ]
    total = connection.scalar(select(func.count()).select_from(TABLE)) or 0
    return events, total
