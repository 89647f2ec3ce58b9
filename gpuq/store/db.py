"""The database engine and connections for one app (one per worker process).

The engine is made by `make_engine` when the app's Runtime is built
(gpuq.runtime), i.e. after gunicorn forks, and connects lazily; `init_app` and
`get_db` make it reachable from the app for the store's accessors and tests.
Every wait is bounded by `Settings.db_timeout`: connecting, waiting for a
pooled connection and (on PostgreSQL) running a statement. On PostgreSQL the
client bounds each round trip too (`BoundedConnection`): a server that hangs
with its TCP connections open (processes stopped, a storage stall) answers no
statement_timeout, so without it a request would wait as long as the hang.
Every failure that means the database cannot do the work now
(`is_unavailable`) is counted in gpuq_database_errors_total, whoever catches it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask, current_app
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gpuq import metrics
from gpuq.config import Settings

EXTENSION = "gpuq.db"


@dataclasses.dataclass
class Database:
    engine: Engine

    def connect(self) -> Connection:
        """A transactional connection: use it in a `with` block and commit at the edge."""
        return self._connect()

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except PoolTimeout:  # raised by the pool itself: the engine's error event never sees it
            metrics.database_error("pool_timeout")
            raise

    def snapshot(self) -> Connection:
        """A connection whose reads all see one consistent state of the database (a
        REPEATABLE READ transaction on PostgreSQL; SQLite's transactions already are)."""
        connection = self._connect()
        if self.engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        return connection

    def autocommit(self) -> Connection:
        """A connection on which every statement is its own transaction, committed when it returns.

        For single-statement work (one INSERT, reads): it saves the BEGIN and
        COMMIT round trips of an explicit transaction.
        """
        return self._connect().execution_options(isolation_level="AUTOCOMMIT")


READ_ONLY_SQLSTATE = "25006"
"""PostgreSQL's read_only_sql_transaction: a write on a standby (say, just after a
fail-over) or on a database switched to read-only."""


def is_read_only(exc: BaseException) -> bool:
    """Whether `exc` is a write refused because the database only reads."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == READ_ONLY_SQLSTATE


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot do the work now (down, slow, or only
    reading), as opposed to a bug: the answer is then 503 with Retry-After."""
    if isinstance(exc, (OperationalError, PoolTimeout)) or is_read_only(exc):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


CLIENT_MARGIN_SECONDS = 1.0
"""How much longer than the server's statement timeout the client waits for an answer, so
that a slow statement is ended by the server (a clean error) before the client gives up."""


class NoAnswer(psycopg.OperationalError):
    """The client gave up waiting for the server: what it had sent may still be applied."""


def is_no_answer(exc: BaseException) -> bool:
    """Whether `exc` is a wait the client cut short (the outcome of a write is unknown)."""
    return isinstance(getattr(exc, "orig", None), NoAnswer)


WAIT_TIMEOUT: type[BaseException] = psycopg.errors._WaitTimeout
"""What psycopg's Connection.wait raises when the timeout it was given runs out. psycopg
has no public name for it (3.3), so it is looked up here, once, at import: a psycopg
that renamed it fails at start, not during an outage (psycopg is pinned in
requirements-runtime.txt; tests/integration/test_hanging_dependencies.py exercises it)."""


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server (a statement, a COMMIT, a
    ROLLBACK) ends after `wait_limit` seconds: the connection is then closed (its state is
    unknown) and OperationalError raised, which the service answers with 503.

    A COMMIT that timed out may still be applied when a hung server resumes (its bytes
    were sent): the client was told nothing certain, and a retry with the same
    Idempotency-Key replays the late commit or is processed anew, never twice.
    """

    wait_limit: float | None = None
    """Seconds; None waits as long as the server takes. Set per connection by make_engine,
    raised for one transaction by `allow_long_wait`."""

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        try:
            return super().wait(gen, interval, self.wait_limit if timeout is None else timeout)
        except WAIT_TIMEOUT:  # the timeout given above ran out
            self.close()
            raise NoAnswer(
                f"the database did not answer within {self.wait_limit} s (hung or unreachable)"
            ) from None


def allow_long_wait(connection: Connection, seconds: float) -> None:
    """Let this connection wait up to `seconds` (plus the margin) for the server until it
    goes back to the pool (for an admin's long statements; PostgreSQL only)."""
    dbapi = connection.connection.dbapi_connection
    if isinstance(dbapi, BoundedConnection):
        dbapi.wait_limit = seconds + CLIENT_MARGIN_SECONDS


def make_engine(settings: Settings) -> Engine:
    """Build the engine for `settings` with every timeout set; connects lazily."""
    url = settings.sqlalchemy_url
    options: dict[str, Any] = {"pool_pre_ping": False}
    if url.startswith("sqlite"):
        database_file = make_url(url).database
        if database_file and database_file != ":memory:":
            Path(database_file).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": settings.db_timeout, "check_same_thread": False}
    else:
        timeout_ms = int(settings.db_timeout * 1000)
        options["connect_args"] = {
            "connect_timeout": max(1, round(settings.db_timeout)),
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
            # A lost network: data unacknowledged this long, or a silent peer, fails the
            # connection instead of leaving a request waiting forever.
            "tcp_user_timeout": timeout_ms,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        # A fixed pool: overflow connections would be opened and closed per request under
        # load, and a PostgreSQL connection costs a process fork on the server.
        options.update(pool_size=settings.db_pool_size, max_overflow=0, pool_timeout=settings.db_timeout)
    engine = create_engine(url, **options)
    event.listen(engine, "handle_error", _count_error)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.driver == "psycopg":
        _bound_waits(engine, settings.db_timeout + CLIENT_MARGIN_SECONDS)
    return engine


def _bound_waits(engine: Engine, limit: float) -> None:
    """Make the engine's connections BoundedConnections waiting at most `limit` seconds."""

    @event.listens_for(engine, "do_connect")
    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> BoundedConnection:
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.wait_limit = limit
        return connection

    @event.listens_for(engine, "checkin")
    def reset(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, BoundedConnection):
            dbapi_connection.wait_limit = limit


def _count_error(context: ExceptionContext) -> None:
    """Count a failed connect or statement that means unavailability (not a constraint
    violation, which the code expects and handles, nor a bug, which answers 500)."""
    error = context.sqlalchemy_exception
    if error is None or not is_unavailable(error):
        return
    metrics.database_error("read_only" if is_read_only(error) else "unavailable")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers run beside the writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def init_app(app: Flask, database: Database) -> None:
    app.extensions[EXTENSION] = database


def get_db(app: Flask | None = None) -> Database:
    """The app's database (the current app's by default)."""
    found: Database = (app or current_app).extensions[EXTENSION]
    return found
