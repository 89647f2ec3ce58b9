"""Idempotency keys: a retried POST with the same key and body gets the first answer.

Rules (the one place they are decided):

* A key is 1-255 printable ASCII characters, scoped to the client address.
* The same key and the same body (compared after parsing: key order, spacing
  and 90 vs 90.0 do not matter) within KEY_TTL replay the first response;
  nothing new is stored and no quota is used, neither submissions nor the
  daily request limit.
* The same key with a different body: Mismatch (422).
* The same key while its first request is still being processed: InFlight
  (409). A claim left in flight for `abandoned_after` (its worker died
  before committing; Settings.idempotency_abandon_seconds) may be taken
  over: the claim completes in the same transaction as the submission, so an
  in-flight claim never has a stored submission.
* A request that fails (invalid, rate limited, database down) releases its
  claim, so the client may retry with the same key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

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

    Raises InFlight or Mismatch. Commits its own statements (autocommit connection).
    """
    connection.execute(delete(TABLE).where(_this(scope, key), TABLE.c.created_at < now - KEY_TTL))
    try:
        connection.execute(
            insert(TABLE).values(scope=scope, key=key, fingerprint=digest, state="in_flight", created_at=now)
        )
        return None
    except IntegrityError:
        pass
    row = connection.execute(select(TABLE).where(_this(scope, key))).first()
    if row is None:  # released between our insert and read: try once more
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


def release(connection: Connection, scope: str, key: str) -> None:
    """Give up an in-flight claim (the request failed before storing anything)."""
    connection.execute(delete(TABLE).where(_this(scope, key), TABLE.c.state == "in_flight"))


def purge_expired(connection: Connection, now: dt.datetime) -> int:
    """Delete every key older than KEY_TTL; returns how many."""
    return connection.execute(delete(TABLE).where(TABLE.c.created_at < now - KEY_TTL)).rowcount


def _this(scope: str, key: str) -> Any:
    return (TABLE.c.scope == scope) & (TABLE.c.key == key)
