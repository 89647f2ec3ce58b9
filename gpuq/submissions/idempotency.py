"""Idempotency keys: a retried POST with the same key and body gets the first answer.

Rules (the one place they are decided):

* A key is 1-255 printable ASCII characters, scoped to the client address.
* The same key and the same body (compared after parsing: key order, spacing
  and 90 vs 90.0 do not matter) within KEY_TTL replay the first response;
  nothing new is stored and no quota is used, neither submissions nor the
  daily request limit.
* The same key with a different body: Mismatch (422).
* The same key while its first request is still being processed: the claim is
  made in the submission's own transaction, so the second request waits for
  the first to commit (then replays its answer) or to fail (then it is
  processed itself), bounded by the database's lock timeout (503 past it).
* A request that fails (invalid, rate limited, database down or crashed) takes
  its claim with it when its transaction rolls back, so a retry with the same
  key is processed as soon as the database answers: nothing needs releasing.
* An in-flight claim committed on its own (by an earlier version, which
  claimed before the transaction) answers InFlight (409) until it is
  `abandoned_after` old (Settings.idempotency_abandon_seconds); then a retry
  takes it over.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gpuq.errors import FieldError, GpuqError, InvalidInput
from gpuq.store import tables

KEY_TTL = dt.timedelta(hours=24)
MAX_KEY_LENGTH = 255
TABLE = tables.IDEMPOTENCY_KEYS


class InFlight(GpuqError):
    """The key's first request is still being processed."""


class Mismatch(GpuqError):
    """The key was first used with a different body."""


@dataclasses.dataclass(frozen=True)
class Replay:
    """The first request's outcome: its response body if attached, and the submission."""

    submission_id: int
    response_body: str | None


def check_key(raw: str | None) -> str | None:
    """The Idempotency-Key header's value, or None when absent; raises InvalidInput (400)."""
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_KEY_LENGTH or not all("\x21" <= c <= "\x7e" for c in raw):
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces",
            [FieldError("Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")],
            status=400,
        )
    return raw


def fingerprint(body: Any) -> str:
    """A digest of a parsed JSON body that ignores key order, spacing and number spelling."""

    def normal(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value.normalize()) if value else "0"
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [normal(v) for v in value]
        return value

    text = json.dumps(normal(body), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def claim(
    connection: Connection,
    scope: str,
    key: str,
    digest: str,
    now: dt.datetime,
    abandoned_after: dt.timedelta = dt.timedelta(seconds=60),
) -> Replay | None:
    """Claim `key` for a new request (returns None), or return the first request's Replay.

    Run it in the transaction that stores the submission and `complete`s the claim: while
    another transaction holds an uncommitted claim of the key, the INSERT waits for it to
    end. Raises InFlight or Mismatch.
    """
    connection.execute(delete(TABLE).where(_this(scope, key), TABLE.c.created_at < now - KEY_TTL))
    values = {"scope": scope, "key": key, "fingerprint": digest, "state": "in_flight", "created_at": now}
    if connection.execute(_insert_new(connection, values)).first() is not None:
        return None
    row = connection.execute(select(TABLE).where(_this(scope, key))).first()
    if row is None:  # deleted between our insert and read: try once more
        return claim(connection, scope, key, digest, now, abandoned_after)
    if row.fingerprint != digest:
        raise Mismatch("this Idempotency-Key was used with a different body")
    if row.state == "done":
        return Replay(row.submission_id, row.response_body)
    taken = connection.execute(
        update(TABLE)
        .where(_this(scope, key), TABLE.c.state == "in_flight", TABLE.c.created_at < now - abandoned_after)
        .values(created_at=now)
    )
    if taken.rowcount == 1:
        return None
    raise InFlight("a request with this Idempotency-Key is still being processed")


def _insert_new(connection: Connection, values: dict[str, Any]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: a row when inserted, none on a conflict,
    and no error to recover from inside the transaction (a failed statement would abort a
    PostgreSQL transaction)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(TABLE).values(**values).on_conflict_do_nothing().returning(TABLE.c.key)


def find_replay(connection: Connection, scope: str, key: str, digest: str, now: dt.datetime) -> Replay | None:
    """The finished first request for this key and body, if any (read only; claims nothing)."""
    row = connection.execute(
        select(TABLE.c.submission_id, TABLE.c.response_body).where(
            _this(scope, key),
            TABLE.c.state == "done",
            TABLE.c.fingerprint == digest,
            TABLE.c.created_at >= now - KEY_TTL,
        )
    ).first()
    return None if row is None else Replay(row.submission_id, row.response_body)


def complete(connection: Connection, scope: str, key: str, submission_id: int) -> None:
    """Mark the claim done; run it in the submission's transaction."""
    connection.execute(
        update(TABLE).where(_this(scope, key)).values(state="done", submission_id=submission_id)
    )


def attach_response(connection: Connection, scope: str, key: str, body: str) -> None:
    """Keep the exact first response body for replays."""
    connection.execute(update(TABLE).where(_this(scope, key)).values(response_body=body))


def purge_expired(connection: Connection, now: dt.datetime) -> int:
    """Delete every key older than KEY_TTL; returns how many."""
    return connection.execute(delete(TABLE).where(TABLE.c.created_at < now - KEY_TTL)).rowcount


def _this(scope: str, key: str) -> Any:
    return (TABLE.c.scope == scope) & (TABLE.c.key == key)
