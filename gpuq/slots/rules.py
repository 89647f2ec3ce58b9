"""The slot pool's rules: leasing GPU slots to the best qualifiers, fairly and race-free.

Policy (the one place it is decided):

* **Eligible**: a registered participant, not disqualified, whose best ranked
  score (their entry in leaderboard view best) reaches the qualifying score,
  who holds no live lease (offered or held) and is not cooling down: a
  participant whose lease ended (expired, released, revoked, or an offer that
  lapsed) less than `cooldown_seconds` ago waits. Anonymous submissions never
  receive a slot.
* A free slot (in the pool, not draining, no live lease) goes to the
  **highest-ranked eligible** participant: leaderboard order
  (gpuq.leaderboard.rule), ties to whoever reached the score first.
* **Which result counts**: a participant's lead (their best ranked result);
  with `measured_only`, their best ranked measured result. A slot tied to a
  GPU model (`gpu_model`) counts only results on that model: it goes to the
  participant with the best such result. Free slots are filled model slots
  first, then by name, so that a participant who qualifies for a model slot
  takes it rather than a slot anybody could use.
* With a claim window (`claim_seconds` > 0) the slot is first *offered*; the
  participant accepts within the window or the offer lapses ("declined") and
  the slot passes on. Without one it is granted at once.
* A lease lasts `lease_seconds` from being granted (accepting an offer).

Race-freedom comes from the database, not from the callers: every allocation
locks one free slot row with `FOR UPDATE SKIP LOCKED` (so concurrent
allocators on any number of workers and hosts take different slots) and
inserts the lease under two unique partial indexes (one live lease per slot,
one per participant). An allocator that loses the race for a participant
gets a unique violation, rolls back to its savepoint and picks the next in
line. SQLite serialises writers, which gives the same guarantees. Expiry ends
each lease with one conditional UPDATE, so concurrent sweeps end it once.

Times come from the caller: the database's clock in production (see
`database_now`), an injected clock in tests. The functions that start or end
a lease take the clock itself and read it only once they hold their locks, so
that the recorded times follow the order in which leases really changed hands
(a worker may be descheduled between reading a time and writing). Functions
here never commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from gpuq.config import SLOT_NAME, Settings
from gpuq.errors import Conflict, FieldError, InvalidInput, NotFound
from gpuq.evidence.model import model_name
from gpuq.leaderboard import rule
from gpuq.store import tables

SLOTS = tables.SLOTS
LEASES = tables.LEASES
POLICY = tables.SLOT_POLICY
SUBMISSIONS = tables.SUBMISSIONS
PARTICIPANTS = tables.PARTICIPANTS
Clock = Callable[[], dt.datetime]
MAX_ROUNDS = 50
"""An allocation hands out at most this many leases per call (the pool is small)."""


@dataclasses.dataclass(frozen=True)
class Policy:
    lease_seconds: int
    cooldown_seconds: int
    claim_seconds: int
    qualifying_score: Decimal
    measured_only: bool = False
    """Only measured results put a participant in line (their best ranked measured one)."""

    def updated(
        self,
        lease_hours: Decimal | None = None,
        cooldown_hours: Decimal | None = None,
        claim_minutes: Decimal | None = None,
        qualifying_score: Decimal | None = None,
        measured_only: bool | None = None,
    ) -> Policy:
        """This policy with the given values changed (None keeps one); raises InvalidInput."""
        new = Policy(
            lease_seconds=self.lease_seconds if lease_hours is None else round(lease_hours * 3600),
            cooldown_seconds=self.cooldown_seconds
            if cooldown_hours is None
            else round(cooldown_hours * 3600),
            claim_seconds=self.claim_seconds if claim_minutes is None else round(claim_minutes * 60),
            qualifying_score=self.qualifying_score if qualifying_score is None else qualifying_score,
            measured_only=self.measured_only if measured_only is None else measured_only,
        )
        if new.lease_seconds < 1:
            raise InvalidInput(
                "invalid fields: lease_hours", [FieldError("lease_hours", "must be at least 1 s")]
            )
        return new

    def as_dict(self) -> dict[str, Any]:
        return {
            "lease_seconds": self.lease_seconds,
            "cooldown_seconds": self.cooldown_seconds,
            "claim_seconds": self.claim_seconds,
            "qualifying_score": str(self.qualifying_score),
            "measured_only": self.measured_only,
        }


@dataclasses.dataclass(frozen=True)
class Change:
    """Something that happened to a lease; published as a `slot` event."""

    action: str
    """grant, offer, accept, release, expiry, decline or revocation."""
    slot: str
    participant: str
    lease_id: int
    expires_at: dt.datetime | None


def database_now(connection: Connection) -> dt.datetime:
    """The database's clock (PostgreSQL: clock_timestamp(), the real time even inside a
    long transaction); SQLite runs in this process, so its clock is ours."""
    if connection.dialect.name == "postgresql":
        moment: dt.datetime = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
        return moment.astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


# Policy and pool, seeded once from the settings.


def seed(connection: Connection, settings: Settings, moment: dt.datetime) -> None:
    """Record the settings' policy and pool in a database that has no policy yet (commits).

    Several processes starting at once race on the primary keys; losers roll back.
    """
    if connection.execute(select(POLICY.c.id)).first() is not None:
        connection.rollback()
        return
    try:
        connection.execute(
            insert(POLICY).values(
                id=1,
                lease_seconds=round(settings.slot_hours * 3600),
                cooldown_seconds=settings.slot_cooldown_seconds,
                claim_seconds=round(settings.slot_claim_minutes * 60),
                qualifying_score=settings.qualifying_score,
                measured_only=settings.slots_measured_only,
                updated_at=moment,
            )
        )
        for name in settings.slot_names:
            connection.execute(insert(SLOTS).values(name=name, created_at=moment))
        connection.commit()
    except IntegrityError:
        connection.rollback()


def policy(connection: Connection) -> Policy:
    row = connection.execute(
        select(
            POLICY.c.lease_seconds,
            POLICY.c.cooldown_seconds,
            POLICY.c.claim_seconds,
            POLICY.c.qualifying_score,
            POLICY.c.measured_only,
        )
    ).one()
    return Policy(*row)


def set_policy(connection: Connection, new: Policy, moment: dt.datetime) -> tuple[Policy, Policy]:
    """Change the policy (running leases keep their expiry); returns (before, after)."""
    before = policy(connection)
    connection.execute(update(POLICY).values(**dataclasses.asdict(new), updated_at=moment))
    return before, new


def _slot(connection: Connection, name: str, lock: bool = False) -> Any:
    query = select(SLOTS).where(SLOTS.c.name == name, SLOTS.c.removed_at.is_(None))
    row = connection.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no slot called {name!r}")
    return row


def add_slot(connection: Connection, name: str, moment: dt.datetime, gpu_model: str | None = None) -> None:
    """Add a slot to the pool (a removed one comes back), tied to `gpu_model` if given;
    raises Conflict if it is in the pool."""
    row = connection.execute(select(SLOTS.c.removed_at).where(SLOTS.c.name == name)).first()
    if row is not None and row.removed_at is None:
        raise Conflict(f"slot {name!r} is already in the pool")
    if row is None:
        connection.execute(insert(SLOTS).values(name=name, created_at=moment, gpu_model=_model(gpu_model)))
    else:
        connection.execute(
            update(SLOTS)
            .where(SLOTS.c.name == name)
            .values(removed_at=None, draining=False, gpu_model=_model(gpu_model))
        )


def set_gpu_model(connection: Connection, name: str, gpu_model: str | None) -> None:
    """Tie a slot to `gpu_model` (None: any result qualifies); a running lease runs on."""
    _slot(connection, name, lock=True)
    connection.execute(update(SLOTS).where(SLOTS.c.name == name).values(gpu_model=_model(gpu_model)))


def _model(gpu_model: str | None) -> str | None:
    return None if gpu_model is None else model_name(gpu_model)


def remove_slot(connection: Connection, name: str, moment: dt.datetime) -> None:
    """Take a free slot out of the pool; raises Conflict while it is leased (drain or revoke first)."""
    _slot(connection, name, lock=True)
    if _live_lease(connection, slot=name) is not None:
        raise Conflict(f"slot {name!r} is leased: drain it (or revoke the lease) first")
    connection.execute(update(SLOTS).where(SLOTS.c.name == name).values(removed_at=moment, draining=False))


def set_draining(connection: Connection, name: str, draining: bool) -> None:
    _slot(connection, name, lock=True)
    connection.execute(update(SLOTS).where(SLOTS.c.name == name).values(draining=draining))


def resize(connection: Connection, size: int, moment: dt.datetime, prefix: str = "gpu-") -> list[str]:
    """Make the pool `size` slots named prefix0..prefix(size-1): missing ones are added (or
    brought back); any others are removed when free and drained when leased. Returns the
    slots left draining."""
    wanted = {f"{prefix}{i}" for i in range(size)}
    rows = connection.execute(select(SLOTS.c.name, SLOTS.c.removed_at).with_for_update()).all()
    present = {row.name for row in rows if row.removed_at is None}
    for name in sorted(wanted - present):
        add_slot(connection, name, moment)
    draining = []
    for name in sorted(present - wanted):
        if _live_lease(connection, slot=name) is None:
            connection.execute(
                update(SLOTS).where(SLOTS.c.name == name).values(removed_at=moment, draining=False)
            )
        else:
            connection.execute(update(SLOTS).where(SLOTS.c.name == name).values(draining=True))
            draining.append(name)
    for name in wanted & present:
        connection.execute(update(SLOTS).where(SLOTS.c.name == name).values(draining=False))
    return draining


# Who is eligible, in what order.


def _counted(rules: Policy, model: str | None) -> list[ColumnElement[bool]] | None:
    """What a result must be to count for a slot (see "Which result counts"); None: the
    participant's lead counts."""
    if not rules.measured_only and model is None:
        return None
    counted: list[ColumnElement[bool]] = [SUBMISSIONS.c.ranked]
    if rules.measured_only:
        counted.append(SUBMISSIONS.c.provenance == "measured")
    if model is not None:
        counted.append(SUBMISSIONS.c.gpu_model == model)
    return counted


def _ranked_entries(moment: dt.datetime, rules: Policy, model: str | None = None) -> Any:
    """Participants who are eligible now with the entry that counts for a slot tied to GPU
    `model` (None: any slot), best first."""
    cooling_since = moment - dt.timedelta(seconds=rules.cooldown_seconds)
    live = exists().where(LEASES.c.participant_id == PARTICIPANTS.c.id, LEASES.c.ended_at.is_(None))
    cooling = exists().where(
        LEASES.c.participant_id == PARTICIPANTS.c.id,
        LEASES.c.ended_at.is_not(None),
        LEASES.c.ended_at > cooling_since,
    )
    entries: Any = SUBMISSIONS
    leading: ColumnElement[bool] = SUBMISSIONS.c.leads
    counted = _counted(rules, model)
    if counted is not None:  # each participant's best result among those that count
        place = rule.leader_place(SUBMISSIONS.c.participant_id, SUBMISSIONS.c.score, SUBMISSIONS.c.id)
        entries = (
            select(SUBMISSIONS.c.participant_id, SUBMISSIONS.c.id, SUBMISSIONS.c.score, place.label("place"))
            .where(*counted)
            .subquery()
        )
        leading = entries.c.place == 1
    return (
        select(PARTICIPANTS.c.id, PARTICIPANTS.c.name, entries.c.score, entries.c.id.label("entry"))
        .join(entries, entries.c.participant_id == PARTICIPANTS.c.id)
        .where(
            leading,
            PARTICIPANTS.c.disqualified_at.is_(None),
            entries.c.score >= rules.qualifying_score,
            ~live,
            ~cooling,
        )
        .order_by(*rule.order(entries.c.score, entries.c.id))
    )


def in_line(
    connection: Connection, moment: dt.datetime, rules: Policy, limit: int, model: str | None = None
) -> list[dict[str, Any]]:
    """The next `limit` eligible participants for a slot tied to GPU `model` (None: a slot
    anybody could use), in order."""
    rows = connection.execute(_ranked_entries(moment, rules, model).limit(limit)).all()
    return [{"position": i, "participant": r.name, "score": r.score} for i, r in enumerate(rows, start=1)]


# Allocation, expiry and the holder's actions.


_FREE = (
    select(SLOTS.c.name, SLOTS.c.gpu_model)
    .where(
        SLOTS.c.removed_at.is_(None),
        ~SLOTS.c.draining,
        ~exists().where(LEASES.c.slot_name == SLOTS.c.name, LEASES.c.ended_at.is_(None)),
    )
    .order_by(SLOTS.c.gpu_model.is_(None), SLOTS.c.name)  # model slots first (see the policy)
)


def any_free_slot(connection: Connection) -> bool:
    """Whether some slot is free right now (no lock: a hint that allocating may succeed)."""
    return connection.execute(_FREE.limit(1)).first() is not None


def model_pools(connection: Connection) -> list[str]:
    """The GPU models that slots in the pool are tied to, by name."""
    query = (
        select(SLOTS.c.gpu_model)
        .where(SLOTS.c.removed_at.is_(None), SLOTS.c.gpu_model.is_not(None))
        .distinct()
        .order_by(SLOTS.c.gpu_model)
    )
    return list(connection.execute(query).scalars())


def allocate_one(connection: Connection, clock: Clock, rules: Policy) -> Change | None:
    """Give one free slot to the highest-ranked participant eligible for it; None when no
    free slot has anybody eligible. Call in a transaction and commit after each.

    Each free slot in turn is locked (skipping slots other allocators hold) and kept only
    if somebody is eligible for it: a savepoint releases the lock of a slot nobody can
    take, so that a concurrent allocator may fill it once somebody can."""
    for slot in connection.execute(_FREE).all():
        attempt = connection.begin_nested()
        locked = connection.execute(
            _FREE.where(SLOTS.c.name == slot.name).with_for_update(skip_locked=True)
        ).first()
        change = None if locked is None else _lease(connection, clock, rules, slot.name, slot.gpu_model)
        if change is not None:
            attempt.commit()
            return change
        attempt.rollback()
    return None


def _lease(
    connection: Connection, clock: Clock, rules: Policy, slot: str, model: str | None
) -> Change | None:
    """Offer (or grant) the locked free `slot` to the first in its line; None: nobody eligible."""
    for _attempt in range(MAX_ROUNDS):
        candidate = connection.execute(_ranked_entries(clock(), rules, model).limit(1)).first()
        if candidate is None:
            return None
        moment = clock()  # the slot is locked and seen free: the grant happens now
        offered = rules.claim_seconds > 0
        expires = moment + dt.timedelta(seconds=rules.claim_seconds if offered else rules.lease_seconds)
        try:
            with connection.begin_nested():
                lease_id = connection.execute(
                    insert(LEASES)
                    .values(
                        slot_name=slot,
                        participant_id=candidate.id,
                        state="offered" if offered else "held",
                        offered_at=moment,
                        granted_at=None if offered else moment,
                        expires_at=expires,
                    )
                    .returning(LEASES.c.id)
                ).scalar_one()
        except IntegrityError:
            continue  # another allocator gave this participant a slot meanwhile: next in line
        return Change("offer" if offered else "grant", slot, candidate.name, lease_id, expires)
    return None


def expire(connection: Connection, moment: dt.datetime) -> list[Change]:
    """End every live lease whose time is up: held ones "expired", lapsed offers "declined".

    One conditional UPDATE: two sweeps at once end each lease once.
    """
    changes = []
    for state, reason, action in (("held", "expired", "expiry"), ("offered", "declined", "decline")):
        rows = connection.execute(
            update(LEASES)
            .where(LEASES.c.ended_at.is_(None), LEASES.c.state == state, LEASES.c.expires_at <= moment)
            .values(state="ended", ended_at=moment, end_reason=reason)
            .returning(LEASES.c.id, LEASES.c.slot_name, LEASES.c.participant_id)
        ).all()
        names = _names(connection, {r.participant_id for r in rows})
        changes += [Change(action, r.slot_name, names[r.participant_id], r.id, None) for r in rows]
    return changes


def _names(connection: Connection, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = connection.execute(
        select(PARTICIPANTS.c.id, PARTICIPANTS.c.name).where(PARTICIPANTS.c.id.in_(ids))
    )
    return dict(rows.all())


def _live_lease(connection: Connection, slot: str | None = None, participant_id: int | None = None) -> Any:
    query = select(LEASES).where(LEASES.c.ended_at.is_(None)).with_for_update()
    if slot is not None:
        query = query.where(LEASES.c.slot_name == slot)
    if participant_id is not None:
        query = query.where(LEASES.c.participant_id == participant_id)
    return connection.execute(query).first()


def accept(connection: Connection, slot: str, participant: tuple[int, str], clock: Clock) -> Change:
    """The offered participant takes the slot: the lease starts now. Raises NotFound when
    the slot is not offered to them (someone else's slot looks like no slot), Conflict when
    they already hold it."""
    lease = _live_lease(connection, slot=slot, participant_id=participant[0])
    if lease is None:
        raise NotFound(f"slot {slot!r} is not offered to {participant[1]!r}")
    if lease.state == "held":
        raise Conflict(f"slot {slot!r} is already held by {participant[1]!r}")
    moment = clock()
    expires = moment + dt.timedelta(seconds=policy(connection).lease_seconds)
    connection.execute(
        update(LEASES)
        .where(LEASES.c.id == lease.id)
        .values(state="held", granted_at=moment, expires_at=expires)
    )
    return Change("accept", slot, participant[1], lease.id, expires)


def decline(connection: Connection, slot: str, participant: tuple[int, str], clock: Clock) -> Change:
    """The offered participant turns the offer down: it ends as a lapsed offer does
    ("declined"), and the slot goes to the next in line. Raises NotFound when the slot is
    not offered to them, Conflict when they already hold it (release it instead)."""
    lease = _live_lease(connection, slot=slot, participant_id=participant[0])
    if lease is None:
        raise NotFound(f"slot {slot!r} is not offered to {participant[1]!r}")
    if lease.state == "held":
        raise Conflict(f"slot {slot!r} is held by {participant[1]!r}: release it instead")
    _end(connection, lease.id, "declined", clock())
    return Change("decline", slot, participant[1], lease.id, None)


def release(connection: Connection, slot: str, participant: tuple[int, str], clock: Clock) -> Change:
    """The holder (or the one offered) gives the slot back. Raises NotFound for anyone else."""
    lease = _live_lease(connection, slot=slot, participant_id=participant[0])
    if lease is None:
        raise NotFound(f"{participant[1]!r} holds no lease on slot {slot!r}")
    _end(connection, lease.id, "released", clock())
    return Change("release", slot, participant[1], lease.id, None)


def revoke(connection: Connection, slot: str, clock: Clock) -> Change:
    """An admin ends the slot's live lease. Raises NotFound when it has none."""
    _slot(connection, slot)
    lease = _live_lease(connection, slot=slot)
    if lease is None:
        raise NotFound(f"slot {slot!r} has no live lease")
    return _revoke(connection, lease, clock)


def revoke_participant(connection: Connection, participant_id: int, clock: Clock) -> Change | None:
    """End the participant's live lease, if any (they were disqualified)."""
    lease = _live_lease(connection, participant_id=participant_id)
    return None if lease is None else _revoke(connection, lease, clock)


def _revoke(connection: Connection, lease: Any, clock: Clock) -> Change:
    _end(connection, lease.id, "revoked", clock())
    name = _names(connection, {lease.participant_id})[lease.participant_id]
    return Change("revocation", lease.slot_name, name, lease.id, None)


def _end(connection: Connection, lease_id: int, reason: str, moment: dt.datetime) -> None:
    connection.execute(
        update(LEASES)
        .where(LEASES.c.id == lease_id, LEASES.c.ended_at.is_(None))
        .values(state="ended", ended_at=moment, end_reason=reason)
    )


# What GET /slots shows.


def pool(connection: Connection, moment: dt.datetime) -> list[dict[str, Any]]:
    """Each slot in the pool: state (free, offered, held, draining), holder and times."""
    live = and_(LEASES.c.slot_name == SLOTS.c.name, LEASES.c.ended_at.is_(None))
    rows = connection.execute(
        select(
            SLOTS.c.name,
            SLOTS.c.gpu_model,
            SLOTS.c.draining,
            LEASES.c.id,
            LEASES.c.state,
            LEASES.c.granted_at,
            LEASES.c.expires_at,
            PARTICIPANTS.c.name.label("holder"),
        )
        .outerjoin(LEASES, live)
        .outerjoin(PARTICIPANTS, PARTICIPANTS.c.id == LEASES.c.participant_id)
        .where(SLOTS.c.removed_at.is_(None))
        .order_by(SLOTS.c.name)
    ).all()
    result = []
    for row in rows:
        state = row.state or "free"
        if row.draining:
            state = "draining"
        left = None if row.expires_at is None else max(0, int((row.expires_at - moment).total_seconds()))
        result.append(
            {
                "name": row.name,
                "gpu_model": row.gpu_model,
                "state": state,
                "lease_state": row.state,
                "holder": row.holder,
                "lease_id": row.id,
                "granted_at": row.granted_at,
                "expires_at": row.expires_at,
                "seconds_left": left,
            }
        )
    return result


def standing(
    connection: Connection, participant_id: int, moment: dt.datetime, rules: Policy
) -> dict[str, Any]:
    """Where a participant stands: eligible with a position in line (and in the line of each
    GPU model pool their results qualify for), or why not."""
    member = connection.execute(
        select(PARTICIPANTS.c.name, PARTICIPANTS.c.disqualified_at).where(PARTICIPANTS.c.id == participant_id)
    ).one()
    lease = connection.execute(
        select(LEASES.c.slot_name, LEASES.c.state).where(
            LEASES.c.participant_id == participant_id, LEASES.c.ended_at.is_(None)
        )
    ).first()
    best = _counting_entry(connection, participant_id, rules, None)
    last_end = connection.scalar(
        select(func.max(LEASES.c.ended_at)).where(LEASES.c.participant_id == participant_id)
    )
    result: dict[str, Any] = {
        "participant": member.name,
        "eligible": False,
        "position": None,
        "gpu_models": [],
    }
    cooling_until = None if last_end is None else last_end + dt.timedelta(seconds=rules.cooldown_seconds)
    if member.disqualified_at is not None:
        result["reason"] = "disqualified"
    elif lease is not None:
        verb = "holds" if lease.state == "held" else "has been offered"
        result["reason"] = f"{verb} slot {lease.slot_name}"
    elif best is None:
        result["reason"] = (
            "no ranked measured result yet" if rules.measured_only else "no ranked submission yet"
        )
    elif best.score < rules.qualifying_score:
        result["reason"] = f"best score {best.score} is below the qualifying score {rules.qualifying_score}"
    elif cooling_until is not None and cooling_until > moment:
        result["reason"] = "cooling down after a lease"
        result["cooling_down_until"] = cooling_until
    else:
        result.update(
            eligible=True,
            position=_position(connection, moment, rules, None, best),
            reason="eligible: waiting for a free slot",
        )
        for model in model_pools(connection):
            entry = _counting_entry(connection, participant_id, rules, model)
            if entry is not None and entry.score >= rules.qualifying_score:
                place = _position(connection, moment, rules, model, entry)
                result["gpu_models"].append({"gpu_model": model, "position": place})
    return result


def _counting_entry(connection: Connection, participant_id: int, rules: Policy, model: str | None) -> Any:
    """The participant's result that counts for a slot tied to `model` (see _ranked_entries):
    a row (score, id), or None."""
    entry = select(SUBMISSIONS.c.score, SUBMISSIONS.c.id).where(
        SUBMISSIONS.c.participant_id == participant_id
    )
    counted = _counted(rules, model)
    if counted is None:
        entry = entry.where(SUBMISSIONS.c.leads)
    else:
        entry = entry.where(*counted).order_by(*rule.order(SUBMISSIONS.c.score, SUBMISSIONS.c.id)).limit(1)
    return connection.execute(entry).first()


def _position(
    connection: Connection, moment: dt.datetime, rules: Policy, model: str | None, entry: Any
) -> int:
    """The place in the line for a slot tied to `model` of an eligible participant whose
    counting result is `entry`."""
    eligible = _ranked_entries(moment, rules, model).subquery()
    ahead = connection.scalar(
        select(func.count())
        .select_from(eligible)
        .where(or_(*rule.ahead_of(eligible.c.score, eligible.c.entry, entry.score, entry.id)))
    )
    return (ahead or 0) + 1


def history(connection: Connection, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Leases newest first, and how many there are."""
    rows = connection.execute(
        select(LEASES, PARTICIPANTS.c.name.label("participant"))
        .join(PARTICIPANTS, PARTICIPANTS.c.id == LEASES.c.participant_id)
        .order_by(LEASES.c.id.desc())
        .offset(offset)
        .limit(limit)
    ).mappings()
    leases = [
        {
            "lease_id": row["id"],
            "slot": row["slot_name"],
            "participant": row["participant"],
            "state": row["state"],
            "offered_at": row["offered_at"],
            "granted_at": row["granted_at"],
            "expires_at": row["expires_at"],
            "ended_at": row["ended_at"],
            "end_reason": row["end_reason"],
        }
        for row in rows
    ]
    return leases, connection.scalar(select(func.count()).select_from(LEASES)) or 0


def check_slot_name(name: str, field: str = "name") -> str:
    """`name` if it is a valid slot name; raises InvalidInput (422) naming `field`."""
    if SLOT_NAME.fullmatch(name) is None:
        message = "must be 1 to 32 letters, digits, '-' or '_'"
        raise InvalidInput(f"invalid fields: {field}", [FieldError(field, message)])
    return name
