"""Shared fixtures: real PostgreSQL and Redis, throw-away per run, clean per test."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from gpuq import create_app
from gpuq.config import Settings
from gpuq.store import migrate
from gpuq.store.db import get_db, make_engine
from tests import services

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


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A migrated throw-away PostgreSQL database for the whole run."""
    url = services.create_database()
    engine = make_engine(Settings(database_url=url))
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    services.drop_database(url)


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


def truncate(app: Flask) -> None:
    engine = get_db(app).engine
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text("TRUNCATE idempotency_keys, submissions, scoring_profiles RESTART IDENTITY CASCADE")
            )
        else:
            connection.execute(text("DELETE FROM idempotency_keys"))
            connection.execute(text("DELETE FROM submissions"))
            connection.execute(text("DELETE FROM scoring_profiles"))


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


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


def stored_count(app: Flask) -> int:
    with get_db(app).engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM submissions")).scalar_one()


def as_decimal(value: Any) -> Decimal:
    return Decimal(str(value))
