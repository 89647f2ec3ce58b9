"""Shared fixtures: real PostgreSQL and Redis, throw-away per run, clean per test."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text

from gpuq import create_app
from gpuq.config import Settings
from gpuq.store import migrate
from gpuq.store.db import get_db, make_engine
from gpuq.store.redis import get_redis
from tests import services
from tests.services import RedisServer, free_port, wait_for_port

WORKED_EXAMPLE = {
    "gpu_utilization": 90,
    "memory_usage": 85,
    "power_efficiency": 95,
    "completion_time": 30,
    "accuracy": 98,
}
SPEC_CURL_BODY = {
    "gpu_utilization": 85.5,
    "memory_usage": 90.2,
    "power_efficiency": 88.7,
    "completion_time": 45.3,
    "accuracy": 95.1,
}


@contextlib.contextmanager
def migrated_database() -> Iterator[str]:
    """A migrated throw-away PostgreSQL database, dropped afterwards; yields its URL."""
    url = services.create_database()
    engine = make_engine(Settings(database_url=url))
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        services.drop_database(url)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A migrated throw-away PostgreSQL database for the whole run."""
    with migrated_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    services.check_redis()
    return services.REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix private to one test; its keys are deleted afterwards."""
    prefix = f"gpuq_test_{uuid.uuid4().hex[:12]}"
    yield prefix
    services.delete_prefix(redis_url, prefix)


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, start: dt.datetime | None = None):
        self.now = start or dt.datetime(2026, 1, 11, 16, 58, 19, 862000, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


TABLES = (
    "evidence",
    "run_tickets",
    "idempotency_keys",
    "audit_events",
    "leases",
    "slots",
    "slot_policy",
    "result_policy",
    "score_history",
    "submissions",
    "api_keys",
    "participants",
    "scoring_profiles",
)
"""Every table, children before parents."""


def empty_tables(engine: Any) -> None:
    """Empty every table (and restart PostgreSQL's id sequences), before and after each test.

    Why not the usual rolled-back transaction per test: the code under test commits
    on connections of its own (services commit at the edge, on pooled connections,
    several at once in the concurrency tests, from other processes in the end-to-end
    tests), so no single outer transaction can hold its writes. One TRUNCATE of all
    tables costs a few milliseconds on PostgreSQL; SQLite has no TRUNCATE, and DELETE
    on its small per-test files is as quick. Restarting the sequences keeps ids
    predictable within a test.
    """
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                connection.execute(text(f"DELETE FROM {table}"))


def truncate(app: Flask) -> None:
    empty_tables(get_db(app).engine)


@pytest.fixture(params=["embedded", "postgres_redis"])
def backend(request: pytest.FixtureRequest, tmp_path) -> dict[str, Any]:
    """Settings for each way the service runs: SQLite + in-process, and PostgreSQL + Redis."""
    if request.param == "embedded":
        url = f"sqlite:///{tmp_path / 'gpuq.sqlite3'}"
        engine = make_engine(Settings(database_url=url))
        migrate.upgrade(engine)
        engine.dispose()
        return {"database_url": url}
    pg = request.getfixturevalue("pg_url")
    return {
        "database_url": pg,
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_prefix": request.getfixturevalue("redis_prefix"),
        "index_check_seconds": 0.0,
    }


@pytest.fixture
def make_app(backend: dict[str, Any]) -> Iterator[Any]:
    """Build apps on the current backend with extra settings; tables are emptied before and after."""
    apps: list[Flask] = []

    def factory(clock: Any = None, **overrides: Any) -> Flask:
        settings = Settings(**{**backend, **overrides})
        app = create_app(settings, clock=clock) if clock else create_app(settings)
        app.config["TESTING"] = True
        if not apps:
            truncate(app)
        apps.append(app)
        return app

    yield factory
    if apps:
        truncate(apps[0])
    for app in apps:
        get_db(app).engine.dispose()
        client = get_redis(app)
        if client is not None:
            client.connection_pool.disconnect()


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


def stored_count(app: Flask) -> int:
    with get_db(app).engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM submissions")).scalar_one()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit_as(client: Any, key: str | None = None, address: str = "10.0.0.1", **metrics: Any) -> Any:
    """POST the worked example (with `metrics` changed) from `address`, with `key` if given."""
    return client.post(
        "/submit_qualification",
        json={**WORKED_EXAMPLE, **metrics},
        headers=bearer(key) if key else {},
        environ_base={"REMOTE_ADDR": address},
    )


def register(client: Any, name: str) -> str:
    """Register `name` through the API; returns the API key."""
    response = client.post("/participants", json={"name": name})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["api_key"]


def http_register(base: str, name: str) -> str:
    """Register `name` with a real server at `base`; returns the API key."""
    import requests

    response = requests.post(f"{base}/participants", json={"name": name}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


def http_qualify(base: str, name: str, **metrics: Any) -> str:
    """Register `name` with a real server and submit the worked example (with `metrics`
    changed) with the new key; returns the key."""
    import requests

    key = http_register(base, name)
    response = requests.post(
        f"{base}/submit_qualification", json={**WORKED_EXAMPLE, **metrics}, headers=bearer(key), timeout=10
    )
    assert response.status_code == 201, response.text
    return key


def make_admin(app: Flask, name: str = "organiser") -> str:
    """Create an admin the way `gpuq participants create NAME --admin` does; returns the key."""
    from gpuq import participants

    with get_db(app).connect() as connection:
        _, key = participants.create(connection, name, is_admin=True, moment=dt.datetime.now(dt.UTC))
        connection.commit()
    return key


def as_decimal(value: Any) -> Decimal:
    return Decimal(str(value))


# Real server processes (`python app.py`), shared by the end-to-end test modules.

ROOT = Path(__file__).resolve().parent.parent


class Server:
    """One `python app.py` process on a free port, its output kept in a log file (stderr in
    a file of its own when `stderr_path` is given)."""

    def __init__(self, env: dict[str, str], log_path: Path, stderr_path: Path | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.stderr_path = stderr_path
        inherited = ("GPUQ_", "DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
        full_env.update(env)
        full_env["PORT"] = str(self.port)
        with contextlib.ExitStack() as files:
            log = files.enter_context(open(log_path, "wb"))
            err = subprocess.STDOUT if stderr_path is None else files.enter_context(open(stderr_path, "wb"))
            self.process = subprocess.Popen(
                [sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=log, stderr=err
            )
        try:
            wait_for_port(self.port, self.process, timeout=60)
        except Exception:
            raise RuntimeError(f"server did not start:\n{self.log()}\n{self.stderr()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stderr(self) -> str:
        """What went to stderr, when it has a file of its own."""
        return "" if self.stderr_path is None else self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def database(pg_url: str) -> Iterator[str]:
    """The run's PostgreSQL database, emptied before and after the test."""

    def empty() -> None:
        engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
        empty_tables(engine)
        engine.dispose()

    empty()
    yield pg_url
    empty()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(**env: str) -> Server:
        server = Server(env, tmp_path / f"server{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
