"""The results policy: whether self-reported results rank, and which plausibility flags hold
a result for review (database steps, and this process's copy).

One row, seeded from the settings (GPUQ_SELF_REPORTED_RANKED, GPUQ_HOLD_FLAGS) the
first time it is read, then changed by admins (PUT /admin/results/policy, audited).
A change applies to results submitted after it; stored results keep their state (an
admin accepts a held one: gpuq.moderation.accept_held).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from gpuq.config import Settings
from gpuq.errors import FieldError, InvalidInput
from gpuq.evidence.flags import CODES as FLAG_CODES
from gpuq.store import tables
from gpuq.store.db import Database

POLICY = tables.RESULT_POLICY
CACHE_SECONDS = 5.0
"""How long a process uses its copy of the policy: an admin's change reaches every worker
within this time."""


@dataclasses.dataclass(frozen=True)
class ResultPolicy:
    self_reported_ranked: bool = True
    hold_flags: tuple[str, ...] = ()

    def withheld(self, provenance: str, flags: Sequence[str], evidence_failed: bool = False) -> str | None:
        """Why a new result is kept off the leaderboard (gpuq.store.models.Submission.withheld),
        or None when it is ranked: a failed evidence check, then this policy."""
        if evidence_failed:
            return "evidence"
        if provenance == "self-reported" and not self.self_reported_ranked:
            return "policy"
        if any(flag in self.hold_flags for flag in flags):
            return "review"
        return None

    def updated(self, self_reported_ranked: bool | None, hold_flags: Sequence[str] | None) -> ResultPolicy:
        """This policy with the given values changed (None keeps one); raises InvalidInput."""
        if hold_flags is not None:
            unknown = sorted(set(hold_flags) - set(FLAG_CODES))
            if unknown:
                raise InvalidInput(
                    "invalid fields: hold_flags",
                    [
                        FieldError(
                            "hold_flags",
                            f"unknown flags {', '.join(unknown)}; known: {', '.join(FLAG_CODES)}",
                        )
                    ],
                )
        return ResultPolicy(
            self.self_reported_ranked if self_reported_ranked is None else self_reported_ranked,
            self.hold_flags
            if hold_flags is None
            else tuple(code for code in FLAG_CODES if code in hold_flags),
        )

    def to_json(self) -> dict[str, Any]:
        return {"self_reported_ranked": self.self_reported_ranked, "hold_flags": list(self.hold_flags)}


def read(connection: Connection, settings: Settings, moment: dt.datetime) -> ResultPolicy:
    """The policy, seeding it from `settings` in a database that has none (commits then)."""
    row = connection.execute(select(POLICY.c.self_reported_ranked, POLICY.c.hold_flags)).first()
    if row is None:
        seeded = ResultPolicy(settings.self_reported_ranked, tuple(settings.hold_flag_codes))
        try:
            connection.execute(
                insert(POLICY).values(
                    id=1,
                    self_reported_ranked=seeded.self_reported_ranked,
                    hold_flags=json.dumps(list(seeded.hold_flags)),
                    updated_at=moment,
                )
            )
            connection.commit()
        except IntegrityError:  # another process seeded it first
            connection.rollback()
            return read(connection, settings, moment)
        return seeded
    return ResultPolicy(bool(row.self_reported_ranked), tuple(json.loads(row.hold_flags)))


def write(connection: Connection, new: ResultPolicy, moment: dt.datetime) -> None:
    connection.execute(
        update(POLICY).values(
            self_reported_ranked=new.self_reported_ranked,
            hold_flags=json.dumps(list(new.hold_flags)),
            updated_at=moment,
        )
    )


class PolicyCache:
    """This process's copy of the policy, read again after CACHE_SECONDS."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        clock: Callable[[], dt.datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._database = database
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._copy: tuple[float, ResultPolicy] | None = None

    def get(self) -> ResultPolicy:
        copy = self._copy
        if copy is not None and self._monotonic() < copy[0]:
            return copy[1]
        with self._database.connect() as connection:
            policy = read(connection, self._settings, self._clock())
        self._copy = (self._monotonic() + CACHE_SECONDS, policy)
        return policy

    def forget(self) -> None:
        """Read the policy again at the next use (after this process changed it)."""
        self._copy = None
