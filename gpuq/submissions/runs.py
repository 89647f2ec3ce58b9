"""Run tickets and the evidence stored with measured submissions (database steps; never commit).

A ticket (POST /runs) is issued to one participant: a random id, a nonce the
evidence must carry back, a seed handed to the benchmark, and a lifetime. The
evidence of one run is submitted once against it: `check` refuses an unknown,
foreign, used or expired ticket or a wrong nonce (gpuq.evidence.checks.refusal)
before any work; `take` uses it up in the submission's transaction with one
conditional UPDATE, so two submissions racing for one ticket store one; `use`
records the submission that used it.

The evidence itself is kept, zlib-compressed canonical JSON, with its digest
(unique: the same measurements are never accepted twice) and the results of its checks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import zlib
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gpuq.clock import iso_z, to_millis
from gpuq.evidence.checks import Result, refusal
from gpuq.evidence.derive import counter_span
from gpuq.evidence.model import Evidence
from gpuq.store import tables

TICKETS = tables.RUN_TICKETS
EVIDENCE = tables.EVIDENCE


@dataclasses.dataclass(frozen=True)
class Issued:
    ticket_id: str
    nonce: str
    seed: int
    issued_at: dt.datetime
    expires_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "nonce": self.nonce,
            "seed": self.seed,
            "issued_at": iso_z(self.issued_at),
            "expires_at": iso_z(self.expires_at),
        }


def issue(connection: Connection, participant_id: int, now: dt.datetime, lifetime: dt.timedelta) -> Issued:
    """A new ticket for the participant."""
    issued = Issued(
        ticket_id=secrets.token_hex(16),
        nonce=secrets.token_hex(16),
        seed=secrets.randbelow(2**31),
        issued_at=to_millis(now),
        expires_at=to_millis(now + lifetime),
    )
    connection.execute(
        insert(TICKETS).values(
            id=issued.ticket_id,
            participant_id=participant_id,
            nonce=issued.nonce,
            seed=issued.seed,
            issued_at=issued.issued_at,
            expires_at=issued.expires_at,
        )
    )
    return issued


def purge_unused(connection: Connection, now: dt.datetime) -> int:
    """Delete the tickets that expired unused a day or more ago (used ones stay: their
    evidence names them); returns how many."""
    stale = now - dt.timedelta(days=1)
    return connection.execute(
        delete(TICKETS).where(TICKETS.c.used_at.is_(None), TICKETS.c.expires_at < stale)
    ).rowcount


def check(connection: Connection, ticket_id: str, participant_id: int, nonce: str, now: dt.datetime) -> None:
    """Raise the refusal for a ticket the participant may not use now (unknown, another's,
    used, expired, a wrong nonce); nothing is locked (see `take`)."""
    row = connection.execute(
        select(TICKETS.c.participant_id, TICKETS.c.nonce, TICKETS.c.expires_at, TICKETS.c.used_at).where(
            TICKETS.c.id == ticket_id
        )
    ).first()
    if row is None:
        raise refusal("ticket_unknown", 404, f"no run ticket {ticket_id[:64]!r}")
    if row.participant_id != participant_id:
        raise refusal("ticket_not_yours", 403)
    if row.used_at is not None:
        raise refusal("ticket_used", 409, f"the run ticket was used at {iso_z(row.used_at)}")
    if now >= row.expires_at:
        raise refusal("ticket_expired", 410, f"the run ticket expired at {iso_z(row.expires_at)}")
    if not secrets.compare_digest(row.nonce, nonce):
        raise refusal("ticket_nonce_mismatch", 422)


def take(
    connection: Connection,
    ticket_id: str,
    participant_id: int,
    nonce: str,
    now: dt.datetime,
) -> tuple[dt.datetime, dt.datetime]:
    """Use the ticket up, in the caller's transaction: one conditional UPDATE, so of two
    submissions racing for it exactly one gets it, on PostgreSQL and SQLite alike; raises
    the refusal (see `check`) otherwise. Returns the ticket's (issued_at, expires_at)."""
    consumed = connection.execute(
        update(TICKETS)
        .where(
            TICKETS.c.id == ticket_id,
            TICKETS.c.participant_id == participant_id,
            TICKETS.c.nonce == nonce,
            TICKETS.c.used_at.is_(None),
            TICKETS.c.expires_at > now,
        )
        .values(used_at=to_millis(now))
        .returning(TICKETS.c.issued_at, TICKETS.c.expires_at)
    ).first()
    if consumed is None:
        check(connection, ticket_id, participant_id, nonce, now)
        raise refusal("ticket_used", 409)  # taken between the check and here
    return consumed.issued_at, consumed.expires_at


def refuse_replay(connection: Connection, digest: str) -> None:
    """Raise Refusal when evidence with this digest was accepted before (the unique index on
    the digest is the backstop for two arriving at once)."""
    if connection.execute(select(EVIDENCE.c.submission_id).where(EVIDENCE.c.digest == digest)).first():
        raise refusal("evidence_replayed", 409)


def energy_reused(connection: Connection, evidence: Evidence) -> bool:
    """Whether stored evidence from the same GPU covers part of this run's counter span."""
    span = counter_span(evidence.samples)
    if span is None:
        return False
    overlapping = select(EVIDENCE.c.submission_id).where(
        EVIDENCE.c.gpu_uuid == evidence.gpu.uuid,
        EVIDENCE.c.energy_from <= span[1],
        EVIDENCE.c.energy_to >= span[0],
    )
    return connection.execute(overlapping.limit(1)).first() is not None


def use(
    connection: Connection,
    evidence: Evidence,
    submission_id: int,
    digest: str,
    canonical: bytes,
    results: list[Result],
) -> None:
    """Record the submission that used the ticket and keep the evidence with its check results."""
    ticket_id = evidence.ticket_id
    span = counter_span(evidence.samples)
    connection.execute(update(TICKETS).where(TICKETS.c.id == ticket_id).values(submission_id=submission_id))
    connection.execute(
        insert(EVIDENCE).values(
            submission_id=submission_id,
            ticket_id=ticket_id,
            digest=digest,
            gpu_uuid=evidence.gpu.uuid,
            energy_from=None if span is None else span[0],
            energy_to=None if span is None else span[1],
            checks=json.dumps([result.to_json() for result in results], separators=(",", ":")),
            body=zlib.compress(canonical, 6),
        )
    )


def is_replay_conflict(exc: IntegrityError) -> bool:
    """Whether `exc` is the evidence digest's unique index refusing a second copy."""
    text = str(exc.orig)
    return "uq_evidence_digest" in text or "evidence.digest" in text


def checks_of(connection: Connection, submission_id: int) -> list[dict[str, Any]] | None:
    """The stored check results of a measured submission (None for a self-reported one)."""
    text = connection.scalar(select(EVIDENCE.c.checks).where(EVIDENCE.c.submission_id == submission_id))
    return None if text is None else list(json.loads(text))


def evidence_of(connection: Connection, submission_id: int) -> dict[str, Any] | None:
    """The evidence as it was submitted (decompressed), or None."""
    body = connection.scalar(select(EVIDENCE.c.body).where(EVIDENCE.c.submission_id == submission_id))
    return None if body is None else dict(json.loads(zlib.decompress(body)))
