"""A database that only reads (a standby after a fail-over, or one switched to read-only):
writes are refused with 503 and Retry-After, nothing is stored, reads go on, and health
says what is wrong."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from gpuq.app import runtime_of
from tests import services
from tests.conftest import WORKED_EXAMPLE, migrated_database, stored_count


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of this test's own, since the test switches it to read-only (requested
    before make_app, so that it is dropped after the app is done with it)."""
    with migrated_database() as url:
        yield url


def set_read_only(url: str, on: bool) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(services.PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}')
        )
    admin.dispose()


def test_writes_to_a_read_only_database_get_503_and_health_says_read_only(own_database, make_app):
    app = make_app(database_url=own_database, redis_url="")
    client = app.test_client()
    assert client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code == 201
    assert client.get("/").get_json()["checks"]["database"]["status"] == "up"

    set_read_only(own_database, True)
    runtime_of(app).database.engine.dispose()  # new connections start read-only
    refused = client.post("/submit_qualification", json={**WORKED_EXAMPLE, "accuracy": 50})
    assert refused.status_code == 503, refused.get_json()
    assert refused.headers["Retry-After"] == "5" and "read-only" in refused.get_json()["detail"]
    registered = client.post("/participants", json={"name": "alice"})
    assert registered.status_code == 503
    board = client.get("/leaderboard")
    assert board.status_code == 200 and board.get_json()["total"] == 1
    health = client.get("/")
    assert health.status_code == 200
    assert health.get_json()["status"] == "degraded"
    assert health.get_json()["checks"]["database"]["status"] == "read_only"

    set_read_only(own_database, False)
    runtime_of(app).database.engine.dispose()
    assert client.get("/").get_json()["status"] == "healthy"
    assert client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code == 201
    assert stored_count(app) == 2
