"""A dependency that hangs (accepts, then never answers) must not hang the health check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from gpuq.api.body import parse_json
from gpuq.app import runtime_of
from gpuq.config import Settings
from gpuq.store import migrate
from gpuq.store.db import is_no_answer, is_unavailable, make_engine
from gpuq.submissions import idempotency
from tests.conftest import WORKED_EXAMPLE, stored_count
from tests.services import CuttableProxy, PostgresCluster


def test_health_answers_in_time_while_the_database_hangs(make_app, pg_url):
    make_app()  # the fixture empties the tables through its first app: keep that one direct
    proxy, through_proxy = CuttableProxy.in_front_of(pg_url)
    try:
        app = make_app(database_url=through_proxy)
        client = app.test_client()
        assert client.get("/").get_json()["status"] == "healthy"  # a pooled connection exists now

        proxy.freeze()
        response = client.get("/")

        # "Timeout": the check gave up at its own bound, rather than waiting for the hang.
        assert response.status_code == 503
        assert response.get_json()["checks"]["database"] == {"status": "down", "error": "Timeout"}
    finally:
        proxy.close()


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test's own, migrated, since the test freezes it."""
    cluster = PostgresCluster()
    cluster.start()
    engine = make_engine(Settings(database_url=cluster.url))
    migrate.upgrade(engine)
    engine.dispose()
    yield cluster
    cluster.stop()


def test_a_hung_database_fails_the_request_within_its_timeout_and_a_retry_is_safe(own_cluster, make_app):
    """PostgreSQL's processes stopped, TCP still acknowledged by the kernel: no server-side
    timeout fires, so the client bounds each wait itself; the retry with the same key stores
    exactly once."""
    app = make_app(database_url=own_cluster.url, db_timeout=0.5)
    client = app.test_client()
    service = runtime_of(app).submissions
    assert client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code == 201
    metrics = {name: parse_json(json.dumps(value).encode()) for name, value in WORKED_EXAMPLE.items()}
    digest = idempotency.fingerprint(parse_json(json.dumps(WORKED_EXAMPLE).encode()))

    def hang(_usage: object) -> None:  # after the claim: the INSERT and the COMMIT meet the hang
        own_cluster.freeze()

    pool = ThreadPoolExecutor(max_workers=1)
    attempt = pool.submit(service.submit, metrics, "10.0.0.9", None, ("hung-key", digest), hang)
    try:
        # Generous: the bound is 1.5 s; without one the call waits for as long as the hang.
        failure = attempt.exception(timeout=30)
    except FutureTimeout:
        failure = None
    finally:
        own_cluster.thaw()
        pool.shutdown(wait=True)
    assert failure is not None and is_unavailable(failure), failure
    assert is_no_answer(failure)  # answered as "may still be stored: retry with the same key"

    retry = client.post(
        "/submit_qualification",
        json=WORKED_EXAMPLE,
        headers={"Idempotency-Key": "hung-key"},
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
    )
    assert retry.status_code == 201, retry.get_json()
    assert stored_count(app) == 2  # the first submission and this one, once
