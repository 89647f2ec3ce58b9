"""Scoring profile versions: which profile is active, and each worker's copy of it.

Versions are only ever added, never edited. Exactly one version is active (a
unique partial index says so); submissions are scored with it, and every
submission records the version that scored it. An admin changes the active
profile through gpuq.submissions.rescoring, which rescores every submission in the same
transaction.

The settings (GPUQ_TIME_BEST_SECONDS, GPUQ_TIME_WORST_SECONDS) only seed the
first version of a new database; after that the database decides, and a
worker whose settings differ says so in the log at start-up.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from gpuq.clock import Clock
from gpuq.config import Settings
from gpuq.scoring import METRICS, Profile
from gpuq.store import tables
from gpuq.store.db import Database

log = logging.getLogger(__name__)
TABLE = tables.SCORING_PROFILES
_ACTIVE = select(TABLE.c.version, TABLE.c.parameters).where(TABLE.c.active)


def canonical(profile: Profile) -> str:
    """The stored form: `Profile.as_dict()` as JSON with sorted keys."""
    return json.dumps(profile.as_dict(), sort_keys=True, separators=(",", ":"))


def parse(parameters: str) -> Profile:
    """Inverse of `canonical`."""
    values = json.loads(parameters)
    return Profile(
        weights={m: Decimal(values[f"weight_{m}"]) for m in METRICS},
        time_best=Decimal(values["time_best"]),
        time_worst=Decimal(values["time_worst"]),
    )


def active(connection: Connection) -> tuple[Profile, int] | None:
    """The active profile and its version, or None in a database that has none yet."""
    row = connection.execute(_ACTIVE).first()
    return None if row is None else (parse(row.parameters), row.version)


def newest_version(connection: Connection) -> int:
    return connection.scalar(select(TABLE.c.version).order_by(TABLE.c.version.desc()).limit(1)) or 0


def ensure_active(connection: Connection, seed: Profile, moment: dt.datetime) -> tuple[Profile, int]:
    """The active profile; in a database without one, `seed` is recorded as the first.

    Commits its own insert. Several processes starting at once race on the
    unique indexes; the losers roll back and read the winner's row.
    """
    for _attempt in range(3):
        found = active(connection)
        connection.rollback()  # end the read's transaction before writing
        if found is not None:
            return found
        version = newest_version(connection) + 1
        try:
            connection.execute(
                insert(TABLE).values(
                    version=version, parameters=canonical(seed), created_at=moment, active=True
                )
            )
            connection.commit()
        except IntegrityError:
            connection.rollback()
            continue
        return seed, version
    raise RuntimeError("could not record the scoring profile after 3 attempts")


class ProfileCache:
    """This process's copy of the active profile and its version (read on first use).

    It may be stale after an admin changed the profile: gpuq.submissions.store.record
    notices (the insert is fenced on the version being active) and the caller `forget`s.
    In a database without a profile, `seed` (from the settings) becomes the first version.
    """

    def __init__(self, database: Database, seed: Profile, clock: Clock):
        self._database = database
        self._seed = seed
        self._clock = clock
        self._current: tuple[Profile, int] | None = None
        self._warned = False

    @classmethod
    def seeded_by(cls, database: Database, settings: Settings, clock: Clock) -> ProfileCache:
        seed = Profile(
            time_best=Decimal(str(settings.time_best_seconds)),
            time_worst=Decimal(str(settings.time_worst_seconds)),
        )
        return cls(database, seed, clock)

    def get(self) -> tuple[Profile, int]:
        """The active profile and its version as this process last read them."""
        current = self._current
        if current is None:
            with self._database.connect() as connection:
                current = self._current = ensure_active(connection, self._seed, self._clock())
            self._warn_if_unlike_seed(*current)
        return current

    def _warn_if_unlike_seed(self, profile: Profile, version: int) -> None:
        seed = self._seed
        if self._warned or (seed.time_best, seed.time_worst) == (profile.time_best, profile.time_worst):
            return
        self._warned = True
        log.warning(
            "scoring profile version %d is active; GPUQ_TIME_*_SECONDS only seed a new database "
            "(change the profile with PUT /admin/scoring)",
            version,
        )

    def forget(self) -> None:
        """Drop this copy: the next `get` reads the active one again."""
        self._current = None
