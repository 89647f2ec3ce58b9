"""The slot service: what the API, the sweeper and other services call to move leases.

`settle` runs after everything that can free a slot or make someone eligible
(a participant's leading submission, a release, a revocation, an admin
change) and from each worker's sweeper (`start_sweeper`); every run is safe
beside any other (see gpuq.slots.rules). What changed is published as
`slot` events on the event bus.

Time: leases are measured by the database's clock, unless the service was
given a clock (tests move an injected clock by hand).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from gpuq import audit, metrics
from gpuq.clock import Clock, iso_z
from gpuq.config import Settings
from gpuq.participants import Member
from gpuq.serialize import number
from gpuq.slots import rules
from gpuq.slots.rules import Change, Policy
from gpuq.store.db import Database, is_unavailable

log = logging.getLogger(__name__)

IN_LINE = 5
"""How many of the next in line the overview shows."""

PoolChange = Callable[[Connection, dt.datetime], Any]
"""An admin change of the pool: (connection, now) -> a Change to publish, or anything else."""


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else iso_z(value)


def slot_json(item: dict[str, Any]) -> dict[str, Any]:
    """A slot of `rules.pool` as the API and the events show it."""
    return {**item, "granted_at": _time(item["granted_at"]), "expires_at": _time(item["expires_at"])}


def _line(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "score": number(e["score"])} for e in entries]


def policy_json(policy: Policy) -> dict[str, Any]:
    return {
        "lease_hours": policy.lease_seconds / 3600,
        "cooldown_hours": policy.cooldown_seconds / 3600,
        "claim_minutes": policy.claim_seconds / 60,
        "qualifying_score": number(policy.qualifying_score),
        "measured_only": policy.measured_only,
    }


def change_json(change: Change) -> dict[str, Any]:
    return {
        "action": change.action,
        "slot": change.slot,
        "participant": change.participant,
        "lease_id": change.lease_id,
        "expires_at": _time(change.expires_at),
    }


class SlotService:
    """The slot pool of one app: `database` is the truth, `publish` sends `slot` events.

    `clock` None means the database's clock (production); tests pass their own.
    """

    def __init__(
        self,
        database: Database,
        publish: Callable[[str, dict[str, Any]], None],
        settings: Settings,
        clock: Clock | None = None,
    ):
        self._database = database
        self._publish = publish
        self._settings = settings
        self._clock = clock
        self._seeded = False

    def clock(self, connection: Connection) -> Clock:
        """The lease clock, to read later (gpuq.slots.rules reads it once it holds its locks)."""
        if self._clock is not None:
            return self._clock
        return lambda: rules.database_now(connection)

    def now(self, connection: Connection) -> dt.datetime:
        return self.clock(connection)()

    def ensure_seeded(self) -> None:
        """Record the configured policy and pool in a new database (once per service)."""
        if self._seeded:
            return
        with self._database.connect() as connection:
            rules.seed(connection, self._settings, self.now(connection))
        self._seeded = True

    def settle(self, expire: bool = True) -> list[Change]:
        """End expired leases and lapsed offers (unless `expire` is False: the sweeper's job),
        then hand out every free slot, each step in its own short transaction; publish the
        changes. Never raises (it runs after commits that must stand, and from the sweeper):
        failures are logged and the next run repairs."""
        changes: list[Change] = []
        try:
            self.ensure_seeded()
            if not expire:
                with self._database.autocommit() as connection:
                    if not rules.any_free_slot(connection):
                        return []  # the common case after a submission: one cheap read
            with self._database.connect() as connection:
                if expire:
                    changes += rules.expire(connection, self.now(connection))
                policy = rules.policy(connection)
                connection.commit()
            for _round in range(rules.MAX_ROUNDS):
                with self._database.connect() as connection:
                    change = rules.allocate_one(connection, self.clock(connection), policy)
                    connection.commit()
                if change is None:
                    break
                changes.append(change)
        except Exception as exc:
            if is_unavailable(exc):  # down, slow or only reading: expected, brief
                log.warning("slot allocation skipped, the database is unavailable: %s", type(exc).__name__)
            else:
                log.exception("slot allocation failed; the sweeper tries again")
        self.publish(changes)
        return changes

    def publish(self, changes: list[Change]) -> None:
        """One `slot` event per change, each carrying the pool as it is now; never raises.
        Every change of a lease passes here once (from the process that made it), so this
        is where changes are counted and logged."""
        if not changes:
            return
        for change in changes:
            metrics.slot_changed(change.action)
            log.info(
                "slot %s: %s %s",
                change.slot,
                change.action,
                change.participant,
                extra={"event": f"slot.{change.action}", **change_json(change)},
            )
        try:
            pool = self.pool()
            for change in changes:
                self._publish("slot", {**change_json(change), "slots": pool})
        except Exception:
            log.exception("could not publish slot changes")

    def pool(self) -> list[dict[str, Any]]:
        """Every slot as the API shows it (the live board's snapshot too)."""
        self.ensure_seeded()
        with self._database.autocommit() as connection:
            return [slot_json(item) for item in rules.pool(connection, self.now(connection))]

    def overview(self, member: Member | None) -> dict[str, Any]:
        """The pool, the next in line, the policy and (for a participant) where they stand,
        all as of one moment."""
        self.ensure_seeded()
        with self._database.snapshot() as connection:
            moment = self.now(connection)
            policy = rules.policy(connection)
            body: dict[str, Any] = {
                "slots": [slot_json(item) for item in rules.pool(connection, moment)],
                "in_line": _line(rules.in_line(connection, moment, policy, IN_LINE)),
                "model_lines": [
                    {
                        "gpu_model": model,
                        "in_line": _line(rules.in_line(connection, moment, policy, IN_LINE, model)),
                    }
                    for model in rules.model_pools(connection)
                ],
                "policy": policy_json(policy),
                "now": iso_z(moment),
            }
            if member is not None:
                me = rules.standing(connection, member.id, moment, policy)
                if "cooling_down_until" in me:
                    me["cooling_down_until"] = iso_z(me["cooling_down_until"])
                body["me"] = me
        return body

    def line(self, connection: Connection) -> list[str]:
        """Who is next in line, by name, as `connection` sees it (inside another change)."""
        moment = self.now(connection)
        return [
            e["participant"] for e in rules.in_line(connection, moment, rules.policy(connection), IN_LINE)
        ]

    def history(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Leases newest first, with their times as the API shows them, and how many there are."""
        with self._database.autocommit() as connection:
            leases, total = rules.history(connection, offset, limit)
        for lease in leases:
            for key in ("offered_at", "granted_at", "expires_at", "ended_at"):
                lease[key] = _time(lease[key])
        return leases, total

    def act_as_holder(self, name: str, member: Member, action: str) -> Change:
        """The participant accepts or declines the slot offered to them ("accept", "decline"),
        or gives theirs back ("release"); raises InvalidInput, NotFound or Conflict (see
        gpuq.slots.rules.accept, decline and release)."""
        act = {"accept": rules.accept, "decline": rules.decline, "release": rules.release}[action]
        self.ensure_seeded()
        with self._database.connect() as connection:
            change = act(
                connection,
                rules.check_slot_name(name, "slot"),
                (member.id, member.name),
                self.clock(connection),
            )
            connection.commit()
        self.publish([change])
        self.settle()
        return change

    def administer(
        self, actor: str, action: str, target: str, change: PoolChange, reason: str | None = None
    ) -> list[dict[str, Any]]:
        """Run an admin's `change` with its audit record (the pool before and after), publish
        what it did to a lease, settle; returns the pool as it is then."""
        self.ensure_seeded()
        with self._database.connect() as connection:
            moment = self.now(connection)
            before = rules.pool(connection, moment)
            result = change(connection, moment)
            after = rules.pool(connection, moment)
            audit.record(
                connection, actor, action, target, {"slots": before}, {"slots": after}, reason, moment
            )
            connection.commit()
        if isinstance(result, Change):
            self.publish([result])
        self.settle()
        return self.pool()

    def policy(self) -> Policy:
        self.ensure_seeded()
        with self._database.autocommit() as connection:
            return rules.policy(connection)

    def set_policy(self, actor: str, **changes: Any) -> Policy:
        """Change the policy (running leases keep their expiry), audited; raises InvalidInput."""
        self.ensure_seeded()
        with self._database.connect() as connection:
            moment = self.now(connection)
            new = rules.policy(connection).updated(**changes)
            before, after = rules.set_policy(connection, new, moment)
            audit.record(
                connection, actor, "slot.policy", "slots", before.as_dict(), after.as_dict(), None, moment
            )
            connection.commit()
        self.settle()
        return new

    def start_sweeper(self) -> threading.Event:
        """Run `settle` every GPUQ_SLOT_SWEEP_SECONDS in this process (a greenlet under gevent);
        returns the event that stops it."""
        stop = threading.Event()
        interval = self._settings.slot_sweep_seconds

        def sweep() -> None:
            while not stop.wait(interval):
                self.settle()

        if interval > 0:
            threading.Thread(target=sweep, name="gpuq-slot-sweeper", daemon=True).start()
        return stop
