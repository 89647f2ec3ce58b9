"""A dependency that hangs (accepts, then never answers) must not hang the health check."""

from __future__ import annotations

import time

from tests.services import CuttableProxy


def test_health_answers_in_time_while_the_database_hangs(make_app, pg_url):
    host_port = pg_url.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    make_app()  # the fixture empties the tables through its first app: keep that one direct
    proxy = CuttableProxy(host, int(port or 5432))
    try:
        app = make_app(database_url=pg_url.replace(f"@{host_port}/", f"@127.0.0.1:{proxy.port}/"))
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
