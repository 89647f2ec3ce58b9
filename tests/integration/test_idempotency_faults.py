"""An Idempotency-Key whose request met a database crash: the answer said nothing was stored,
so a retry with the same key must be processed as soon as the database answers again."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.exc import DBAPIError

from gpuq.api.body import parse_json
from gpuq.app import runtime_of
from gpuq.store.db import is_unavailable
from gpuq.submissions import idempotency
from tests.conftest import WORKED_EXAMPLE, stored_count
from tests.services import CuttableProxy


def test_a_key_whose_request_met_a_database_crash_is_free_once_the_database_is_back(make_app, pg_url):
    make_app()  # the fixture empties the tables through its first app: keep that one direct
    proxy, through_proxy = CuttableProxy.in_front_of(pg_url)
    try:
        app = make_app(database_url=through_proxy)
        service = runtime_of(app).submissions
        metrics = {name: parse_json(json.dumps(value).encode()) for name, value in WORKED_EXAMPLE.items()}
        digest = idempotency.fingerprint(parse_json(json.dumps(WORKED_EXAMPLE).encode()))

        def crash(_usage: object) -> None:  # after the claim and the quota, before the INSERT
            proxy.cut()

        with pytest.raises(DBAPIError) as failed:
            service.submit(metrics, "10.0.0.1", None, ("crash-key", digest), on_usage=crash)
        assert is_unavailable(failed.value)  # answered 503: nothing stored, retry later
        proxy.restore()

        retry = app.test_client().post(
            "/submit_qualification",
            json=WORKED_EXAMPLE,
            headers={"Idempotency-Key": "crash-key"},
            environ_base={"REMOTE_ADDR": "10.0.0.1"},
        )
        assert retry.status_code == 201, retry.get_json()
        assert "Idempotent-Replayed" not in retry.headers
        again = app.test_client().post(
            "/submit_qualification",
            json=WORKED_EXAMPLE,
            headers={"Idempotency-Key": "crash-key"},
            environ_base={"REMOTE_ADDR": "10.0.0.1"},
        )
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_json() == retry.get_json()
        assert stored_count(app) == 1
    finally:
        proxy.close()
