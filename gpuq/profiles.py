"""Scoring profile versions: the configured profile, recorded once in the database.

Every submission records the version that scored it. Versions are only ever
added: when the configured profile differs from the newest stored one, a new
version is inserted; an identical one is reused.
"""

from __future__ import annotations

import datetime as dt
import json

from flask import Flask, current_app
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from gpuq.clock import now
from gpuq.config import Settings
from gpuq.scoring import Profile
from gpuq.store.db import get_db
from gpuq.store.models import ScoringProfile


def canonical(profile: Profile) -> str:
    return json.dumps(profile.as_dict(), sort_keys=True, separators=(",", ":"))


def ensure_version(connection: Connection, profile: Profile, now: dt.datetime) -> int:
    """Return the version number of `profile`, inserting it if the newest stored one differs.

    Commits its own insert: it runs once per process, before any request
    uses the version. Several processes starting at once race on the primary
    key; the loser rolls back and reads the winner's row.
    """
    parameters = canonical(profile)
    table = ScoringProfile.__table__
    newest_query = select(table.c.version, table.c.parameters).order_by(table.c.version.desc()).limit(1)
    for _attempt in range(3):
        newest = connection.execute(newest_query).first()
        connection.rollback()  # end the read's transaction before writing
        if newest is not None and newest.parameters == parameters:
            return newest.version
        version = (newest.version + 1) if newest else 1
        try:
            connection.execute(insert(table).values(version=version, parameters=parameters, created_at=now))
            connection.commit()
        except IntegrityError:
            connection.rollback()
            continue
        return version
    raise RuntimeError("could not record the scoring profile after 3 attempts")


EXTENSION = "gpuq.profile"


def init_app(app: Flask, settings: Settings) -> None:
    profile = Profile(time_best=settings.time_best_seconds, time_worst=settings.time_worst_seconds)
    app.extensions[EXTENSION] = {"profile": profile, "version": None}


def get_profile() -> tuple[Profile, int]:
    """The configured profile and its stored version (recorded on first use in this process)."""
    state = current_app.extensions[EXTENSION]
    if state["version"] is None:
        with get_db().connect() as connection:
            state["version"] = ensure_version(connection, state["profile"], now())
    return state["profile"], state["version"]
