"""A dependency that hangs (accepts, then never answers) must not hang the health check."""

from __future__ import annotations

import time

from tests.services import CuttableProxy


def test_health_answers_in_time_while_the_database_hangs(make_app, pg_url):
    make_app()  # the fixture empties the tables through its first app: keep that one direct
    proxy, through_proxy = CuttableProxy.in_front_of(pg_url)
    try:
        app = make_app(database_url=through_proxy)
        client = app.test_client()
        assert client.get("/").get_json()["status"] == "healthy"  # a pooled connection exists now

        proxy.freeze()
        started = time.monotonic()
        response = client.get("/")
        elapsed = time.monotonic() - started

        assert response.status_code == 503
        assert response.get_json()["checks"]["database"] == {"status": "down", "error": "Timeout"}
        assert elapsed < 2.5
    finally:
        proxy.close()
