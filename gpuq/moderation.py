"""Disqualifying and reinstating submissions and participants.

Disqualified entries leave both leaderboard views but stay stored (with the
time and reason) and visible to admins and in the export. What the views
hold is derived, in one place (`rank_participant`, `place_leaders`, `place_anonymous`):

* `ranked`: the submission is not disqualified, nor is its participant, and it is not
  withheld (its evidence failed a check: gpuq.submissions.store.Provenance);
* `leads`: ranked, and anonymous or the participant's best ranked submission
  (by gpuq.leaderboard.rule).

Every change locks the active scoring profile's row first: admin changes
(this module and gpuq.submissions.rescoring) then run one at a time, and always take
their locks in the same order as submissions do (profile, participant,
submissions), so they cannot deadlock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, select, update

from gpuq import audit, participants
from gpuq.clock import Clock, iso_z
from gpuq.errors import Conflict, NotFound
from gpuq.leaderboard import Leaderboard, rule
from gpuq.participants import Member
from gpuq.slots import rules as slot_rules
from gpuq.slots.rules import Change
from gpuq.slots.service import SlotService
from gpuq.store import tables
from gpuq.store.db import Database
from gpuq.submissions import store

log = logging.getLogger(__name__)

TABLE = tables.SUBMISSIONS
PARTICIPANTS = tables.PARTICIPANTS
PROFILES = tables.SCORING_PROFILES


RANKABLE = and_(TABLE.c.disqualified_at.is_(None), TABLE.c.withheld.is_(None))
"""A submission that is neither disqualified nor withheld (its participant aside)."""


def lock_admin_changes(connection: Connection) -> None:
    """Serialise admin changes (see the module docstring). SQLite serialises writers anyway."""
    connection.execute(select(PROFILES.c.version).where(PROFILES.c.active).with_for_update())


def rank_participant(connection: Connection, participant_id: int) -> None:
    """Recompute `ranked` of one participant's submissions, then their leader."""
    owner_disqualified = (
        select(PARTICIPANTS.c.disqualified_at).where(PARTICIPANTS.c.id == participant_id).scalar_subquery()
    )
    connection.execute(
        update(TABLE)
        .where(TABLE.c.participant_id == participant_id)
        .values(ranked=and_(RANKABLE, owner_disqualified.is_(None)))
    )
    place_leaders(connection, participant_id)


def place_leaders(connection: Connection, participant_id: int | None = None) -> None:
    """Recompute `leads` of one participant's submissions (every participant's when None).

    Set-based and touching only rows that change: each participant's best ranked
    submission is found with one window function (PostgreSQL and SQLite alike).
    """
    mine: ColumnElement[bool] = TABLE.c.participant_id.is_not(None)
    if participant_id is not None:
        mine = TABLE.c.participant_id == participant_id
    # Unranked rows never lead.
    connection.execute(update(TABLE).where(mine, TABLE.c.leads, ~TABLE.c.ranked).values(leads=False))
    place = rule.leader_place(TABLE.c.participant_id, TABLE.c.score, TABLE.c.id).label("place")
    ordered = select(TABLE.c.participant_id, TABLE.c.id, place).where(mine, TABLE.c.ranked).subquery()
    best = select(ordered.c.participant_id, ordered.c.id).where(ordered.c.place == 1).subquery()
    leads = TABLE.c.id == best.c.id
    connection.execute(
        update(TABLE)
        .where(TABLE.c.participant_id == best.c.participant_id, TABLE.c.ranked, TABLE.c.leads != leads)
        .values(leads=leads)
    )


def place_anonymous(connection: Connection, submission_id: int) -> None:
    ranked = RANKABLE
    connection.execute(update(TABLE).where(TABLE.c.id == submission_id).values(ranked=ranked, leads=ranked))


def _submission_state(connection: Connection, submission_id: int) -> dict[str, Any]:
    row = connection.execute(
        select(
            TABLE.c.participant_id,
            TABLE.c.disqualified_at,
            TABLE.c.disqualify_reason,
            TABLE.c.ranked,
            TABLE.c.withheld,
        ).where(TABLE.c.id == submission_id)
    ).first()
    if row is None:
        raise NotFound(f"no submission with id {submission_id}")
    return {
        "participant_id": row.participant_id,
        "disqualified": row.disqualified_at is not None,
        "disqualified_at": None if row.disqualified_at is None else iso_z(row.disqualified_at),
        "disqualify_reason": row.disqualify_reason,
        "ranked": row.ranked,
        "withheld": row.withheld,
    }


def set_submission(
    connection: Connection, submission_id: int, disqualify: bool, reason: str, moment: dt.datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Disqualify or reinstate a submission; returns its state (before, after).

    Raises NotFound, or Conflict when it already is in the asked state. Does not commit.
    """
    lock_admin_changes(connection)
    before = _submission_state(connection, submission_id)
    if before["disqualified"] == disqualify:
        state = "disqualified" if disqualify else "not disqualified"
        raise Conflict(f"submission {submission_id} is already {state}")
    connection.execute(
        update(TABLE)
        .where(TABLE.c.id == submission_id)
        .values(
            disqualified_at=moment if disqualify else None,
            disqualify_reason=reason if disqualify else None,
        )
    )
    return _placed_again(connection, submission_id, before)


def accept_held(connection: Connection, submission_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rank a submission held for review by the results policy, or kept off the board by a
    failed evidence check (an admin who looked at the evidence decides); returns its state
    (before, after).

    Raises NotFound, or Conflict when it is not held for review. Does not commit.
    """
    lock_admin_changes(connection)
    before = _submission_state(connection, submission_id)
    if before["withheld"] not in ("review", "evidence"):
        raise Conflict(f"submission {submission_id} is not held for review or by its evidence")
    connection.execute(update(TABLE).where(TABLE.c.id == submission_id).values(withheld=None))
    return _placed_again(connection, submission_id, before)


def _placed_again(
    connection: Connection, submission_id: int, before: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Recompute a changed submission's places (and its participant's); returns its state
    (before, after)."""
    if before["participant_id"] is None:
        place_anonymous(connection, submission_id)
    else:
        _lock_participant(connection, before["participant_id"])
        rank_participant(connection, before["participant_id"])
    return _without_owner(before), _without_owner(_submission_state(connection, submission_id))


def _without_owner(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "participant_id"}


def _lock_participant(connection: Connection, participant_id: int) -> Member:
    """Lock the participant's row and return it as it is now."""
    row = connection.execute(
        select(*participants.MEMBER_COLUMNS).where(PARTICIPANTS.c.id == participant_id).with_for_update()
    ).one()
    return Member(*row)


def participant_state(member: Member) -> dict[str, Any]:
    return {
        "disqualified": member.disqualified,
        "disqualified_at": None if member.disqualified_at is None else iso_z(member.disqualified_at),
        "disqualify_reason": member.disqualify_reason,
    }


def set_participant(
    connection: Connection, member: Member, disqualify: bool, reason: str, moment: dt.datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Disqualify or reinstate a participant and all their submissions' places; returns (before, after).

    Raises Conflict when they already are in the asked state. Does not commit.
    """
    lock_admin_changes(connection)
    member = _lock_participant(connection, member.id)
    if member.disqualified == disqualify:
        state = "disqualified" if disqualify else "not disqualified"
        raise Conflict(f"participant {member.name!r} is already {state}")
    connection.execute(
        update(PARTICIPANTS)
        .where(PARTICIPANTS.c.id == member.id)
        .values(
            disqualified_at=moment if disqualify else None,
            disqualify_reason=reason if disqualify else None,
        )
    )
    rank_participant(connection, member.id)
    after = {
        "disqualified": disqualify,
        "disqualified_at": iso_z(moment) if disqualify else None,
        "disqualify_reason": reason if disqualify else None,
    }
    return participant_state(member), after


States = tuple[dict[str, Any], dict[str, Any]]
"""A moderated thing's state (before, after)."""


class ModerationService:
    """Disqualifying and reinstating, each with its audit record; the leaderboard index and
    the slot pool follow."""

    def __init__(self, *, database: Database, board: Leaderboard, slots: SlotService, clock: Clock):
        self._database = database
        self._board = board
        self._slots = slots
        self._clock = clock

    def find(self, name: str) -> Member:
        """The participant called `name`; raises NotFound."""
        with self._database.autocommit() as connection:
            return participants.get(connection, name)

    def participant(self, member: Member, disqualify: bool, reason: str, actor: str) -> Decision:
        """Disqualify (ending any lease they hold) or reinstate `member` (see `find`); raises
        Conflict."""
        revoked: list[Change] = []

        def change(connection: Connection, moment: dt.datetime) -> States:
            states = set_participant(connection, member, disqualify, reason, moment)
            if disqualify:  # a disqualified participant keeps no slot
                lease = slot_rules.revoke_participant(connection, member.id, self._slots.clock(connection))
                revoked.extend([lease] if lease else [])
            return states

        target = f"participant:{member.name}"
        action = f"participant.{'disqualify' if disqualify else 'reinstate'}"
        return self._apply(action, reason, actor, target, change, {"participant_id": member.id}, revoked)

    def submission(self, submission_id: int, disqualify: bool, reason: str, actor: str) -> Decision:
        """Disqualify or reinstate submission `submission_id`; raises NotFound or Conflict."""
        store.check_id(submission_id)

        def change(connection: Connection, moment: dt.datetime) -> States:
            return set_submission(connection, submission_id, disqualify, reason, moment)

        target = f"submission:{submission_id}"
        action = f"submission.{'disqualify' if disqualify else 'reinstate'}"
        return self._apply(action, reason, actor, target, change, {"submission_id": submission_id})

    def accept(self, submission_id: int, reason: str, actor: str) -> Decision:
        """Rank submission `submission_id`, held for review by the results policy; raises
        NotFound or Conflict (not held)."""
        store.check_id(submission_id)

        def change(connection: Connection, _moment: dt.datetime) -> States:
            return accept_held(connection, submission_id)

        target = f"submission:{submission_id}"
        return self._apply(
            "submission.accept", reason, actor, target, change, {"submission_id": submission_id}
        )

    def _apply(
        self,
        action: str,
        reason: str,
        actor: str,
        target: str,
        change: Callable[[Connection, dt.datetime], States],
        reindex: dict[str, int],
        slot_changes: list[Change] | None = None,
    ) -> Decision:
        moment = self._clock()
        with self._database.connect() as connection:
            before, after = change(connection, moment)
            audit.record(connection, actor, action, target, before, after, reason, moment)
            connection.commit()
        log.info(
            "%s by %s: %s",
            action,
            actor,
            target,
            extra={"event": action, "target": target, "actor": actor, "reason": reason},
        )
        self._board.reindex(**reindex)
        self._slots.publish(slot_changes or [])
        self._slots.settle()
        return Decision(target, action, before, after)


@dataclasses.dataclass(frozen=True)
class Decision:
    target: str
    action: str
    before: dict[str, Any]
    after: dict[str, Any]
