"""Schema migrations (Alembic), safe to start on several hosts at once.

`upgrade()` takes a lock first: a PostgreSQL advisory lock (held by the
migrating connection, released when it closes) or, for SQLite, an exclusive
file lock beside the database. Whoever gets the lock second finds nothing left
to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""Alembic's scripts, shipped inside the package (package data)."""
# An arbitrary constant naming gpuq's migration lock among PostgreSQL advisory locks.
ADVISORY_LOCK_KEY = 0x67707571


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()
            try:
                yield connection
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                connection.commit()
        return
    database_file = engine.url.database
    lock_path = Path(f"{database_file}.migrate.lock") if database_file not in (None, "", ":memory:") else None
    if lock_path is None:  # an in-memory database is private to this process: nothing to lock
        with engine.connect() as connection:
            yield connection
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            with engine.connect() as connection, _foreign_keys_deferred(connection):
                yield connection
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextlib.contextmanager
def _foreign_keys_deferred(connection: Connection) -> Iterator[None]:
    """SQLite alters a table by copying it and dropping the old one; with foreign keys on,
    dropping a table that other rows refer to fails (or deletes them). So the migration
    runs with them off (the pragma only works outside a transaction), is checked with
    `foreign_key_check` before they are switched back on, and fails if anything dangles."""
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        yield
        dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if dangling:
            raise RuntimeError(f"the migration left rows referring to nothing: {dangling[:5]}")
    finally:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every pending migration up to `revision`, under the migration lock."""
    with _migration_lock(engine) as connection:
        command.upgrade(alembic_config(connection), revision)
        connection.commit()


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to `revision` (e.g. "base"), under the migration lock."""
    with _migration_lock(engine) as connection:
        command.downgrade(alembic_config(connection), revision)
        connection.commit()


@functools.cache
def heads() -> frozenset[str]:
    """The newest migrations this code knows (read once per process)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def is_current_on(connection: Connection) -> bool:
    """True when the schema `connection` sees is at the newest migration."""
    return set(MigrationContext.configure(connection).get_current_heads()) == heads()


def is_current(engine: Engine) -> bool:
    """True when the database schema is at the newest migration."""
    with engine.connect() as connection:
        return is_current_on(connection)
