"""The slot pool over HTTP, and `settle`: ending what expired and handing out free slots.

GET  /slots                       every slot's state, who is next in line, and (with a key) where you stand
GET  /slots/history               leases, newest first (paginated)
POST /slots/<name>/accept         the offered participant takes the slot (with a claim window)
POST /slots/<name>/release        the holder gives it back

`settle` runs after everything that can free a slot or make someone eligible
(a participant's accepted submission, a release, a revocation, an admin
change) and from each worker's sweeper (`start_sweeper`); every run is safe
beside any other (see gpuq.slots). What changed is published as `slot`
events through the service's event bus.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gpuq import slots
from gpuq.api import auth
from gpuq.api.params import HISTORY
from gpuq.clock import EXTENSION as CLOCK
from gpuq.clock import iso_z, utcnow
from gpuq.events import EXTENSION as EVENTS
from gpuq.serialize import number
from gpuq.store.db import get_db

bp = Blueprint("slots", __name__)
log = logging.getLogger(__name__)
SEEDED = "gpuq.slots_seeded"
IN_LINE = 5
"""How many of the next in line GET /slots shows."""


def slot_now(connection: Connection) -> dt.datetime:
    """The time leases are measured by: the database's clock, unless the app was given a
    clock (tests move an injected clock by hand)."""
    return slot_clock(connection)()


def slot_clock(connection: Connection) -> slots.Clock:
    """`slot_now` as a clock to read later (gpuq.slots reads it once it holds its locks)."""
    clock = current_app.extensions[CLOCK]
    return (lambda: slots.database_now(connection)) if clock is utcnow else clock


def ensure_seeded() -> None:
    """Record the configured policy and pool in a new database (once per worker)."""
    if current_app.extensions.get(SEEDED):
        return
    with get_db().connect() as connection:
        slots.seed(connection, current_app.config["GPUQ_SETTINGS"], slot_now(connection))
    current_app.extensions[SEEDED] = True


def settle(expire: bool = True) -> list[slots.Change]:
    """End expired leases and lapsed offers (unless `expire` is False: the sweeper's job),
    then hand out every free slot, each step in its own short transaction; publish the
    changes. Never raises (it runs after commits that must stand, and from the sweeper):
    failures are logged and the next run repairs."""
    changes: list[slots.Change] = []
    try:
        ensure_seeded()
        database = get_db()
        if not expire:
            with database.autocommit() as connection:
                if not slots.any_free_slot(connection):
                    return []  # the common case after a submission: one cheap read
        with database.connect() as connection:
            if expire:
                changes += slots.expire(connection, slot_now(connection))
            rules = slots.policy(connection)
            connection.commit()
        for _round in range(slots.MAX_ROUNDS):
            with database.connect() as connection:
                change = slots.allocate_one(connection, slot_clock(connection), rules)
                connection.commit()
            if change is None:
                break
            changes.append(change)
    except (OperationalError, PoolTimeout) as exc:  # the database is down or slow: expected, brief
        log.warning("slot allocation skipped, the database is unavailable: %s", type(exc).__name__)
    except Exception:
        log.exception("slot allocation failed; the sweeper tries again")
    publish(changes)
    return changes


def publish(changes: list[slots.Change]) -> None:
    """One `slot` event per change, each carrying the pool as it is now; never raises."""
    if not changes:
        return
    try:
        with get_db().autocommit() as connection:
            pool = [_slot_json(item) for item in slots.pool(connection, slot_now(connection))]
        bus = current_app.extensions[EVENTS]
        for change in changes:
            bus.publish(
                "slot",
                {
                    "action": change.action,
                    "slot": change.slot,
                    "participant": change.participant,
                    "lease_id": change.lease_id,
                    "expires_at": None if change.expires_at is None else iso_z(change.expires_at),
                    "slots": pool,
                },
            )
    except Exception:
        log.exception("could not publish slot changes")


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else iso_z(value)


def _slot_json(item: dict[str, Any]) -> dict[str, Any]:
    return {
        **item,
        "granted_at": _time(item["granted_at"]),
        "expires_at": _time(item["expires_at"]),
    }


def current_pool() -> list[dict[str, Any]]:
    """The pool as the live board's snapshot shows it."""
    ensure_seeded()
    with get_db().autocommit() as connection:
        return [_slot_json(item) for item in slots.pool(connection, slot_now(connection))]


@bp.get("/slots")
def get_slots():
    member = auth.caller()
    ensure_seeded()
    with get_db().snapshot() as connection:  # the pool and the line as of one moment
        moment = slot_now(connection)
        rules = slots.policy(connection)
        body: dict[str, Any] = {
            "slots": [_slot_json(item) for item in slots.pool(connection, moment)],
            "in_line": [
                {**e, "score": number(e["score"])} for e in slots.in_line(connection, moment, rules, IN_LINE)
            ],
            "policy": policy_json(rules),
            "now": iso_z(moment),
        }
        if member is not None:
            me = slots.standing(connection, member.id, moment, rules)
            if "cooling_down_until" in me:
                me["cooling_down_until"] = iso_z(me["cooling_down_until"])
            body["me"] = me
    return jsonify(body)


def policy_json(rules: slots.Policy) -> dict[str, Any]:
    return {
        "lease_hours": rules.lease_seconds / 3600,
        "cooldown_hours": rules.cooldown_seconds / 3600,
        "claim_minutes": rules.claim_seconds / 60,
        "qualifying_score": number(rules.qualifying_score),
    }


@bp.get("/slots/history")
def slot_history():
    limit, offset = HISTORY.read()
    with get_db().autocommit() as connection:
        leases, total = slots.history(connection, offset, limit)
    for lease in leases:
        for key in ("offered_at", "granted_at", "expires_at", "ended_at"):
            lease[key] = _time(lease[key])
    return jsonify({"leases": leases, "total": total, "limit": limit, "offset": offset})


def _holder_action(name: str, act: Any):
    member = auth.require_participant()
    ensure_seeded()
    with get_db().connect() as connection:
        change = act(
            connection, slots.check_slot_name(name, "slot"), (member.id, member.name), slot_clock(connection)
        )
        connection.commit()
    publish([change])
    settle()
    return jsonify(
        {
            "action": change.action,
            "slot": change.slot,
            "participant": change.participant,
            "lease_id": change.lease_id,
            "expires_at": _time(change.expires_at),
        }
    )


@bp.post("/slots/<name>/accept")
def accept_slot(name: str):
    return _holder_action(name, slots.accept)


@bp.post("/slots/<name>/release")
def release_slot(name: str):
    return _holder_action(name, slots.release)


def start_sweeper(app: Flask) -> threading.Event:
    """Run `settle` every GPUQ_SLOT_SWEEP_SECONDS in this worker (a greenlet under gevent);
    returns the event that stops it."""
    stop = threading.Event()
    interval = app.config["GPUQ_SETTINGS"].slot_sweep_seconds

    def sweep() -> None:
        while not stop.wait(interval):
            with app.app_context():
                settle()

    if interval > 0:
        threading.Thread(target=sweep, name="gpuq-slot-sweeper", daemon=True).start()
    return stop
