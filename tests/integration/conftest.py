"""Integration tests run on PostgreSQL and Redis only."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["postgres_redis"])
def backend(request: pytest.FixtureRequest) -> dict:
    return {
        "database_url": request.getfixturevalue("pg_url"),
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_prefix": request.getfixturevalue("redis_prefix"),
        "index_check_seconds": 0.0,
    }
