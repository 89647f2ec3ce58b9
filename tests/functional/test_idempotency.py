"""Idempotency-Key on POST /submit_qualification, on both backends."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from gpuq.api.body import parse_json
from gpuq.store.db import get_db
from gpuq.submissions import idempotency
from tests.conftest import WORKED_EXAMPLE, FrozenClock, stored_count

PROBLEM = "application/problem+json"


def submit(client, key: str | None, body=None):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/submit_qualification", json=body or WORKED_EXAMPLE, headers=headers)


def submit_remaining(client) -> int:
    limits = client.get("/quota").get_json()["limits"]
    return next(item["remaining"] for item in limits if item["scope"] == "submit")


def keys_stored(app) -> int:
    with get_db(app).engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one()


def test_a_retry_replays_the_first_response_and_stores_nothing_new(client, app):
    first = submit(client, "retry-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    remaining = submit_remaining(client)

    again = submit(client, "retry-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert stored_count(app) == 1
    assert submit_remaining(client) == remaining  # the replay used no quota


def test_the_same_body_spelled_differently_is_the_same_body(client, app):
    submit(
        client,
        "spelling",
        {
            "gpu_utilization": 90,
            "memory_usage": 85,
            "power_efficiency": 95,
            "completion_time": 30,
            "accuracy": 98,
        },
    )
    again = submit(
        client,
        "spelling",
        {
            "accuracy": 98.0,
            "completion_time": 30.00,
            "power_efficiency": 95,
            "memory_usage": 85,
            "gpu_utilization": 90,
        },
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stored_count(app) == 1


def test_the_same_key_with_another_body_is_422(client, app):
    assert submit(client, "k").status_code == 201
    other = submit(client, "k", {**WORKED_EXAMPLE, "accuracy": 10})
    assert other.status_code == 422
    assert other.mimetype == PROBLEM
    assert other.get_json()["errors"][0]["field"] == "Idempotency-Key"
    assert stored_count(app) == 1


def test_keys_of_different_clients_never_meet(client, app):
    mine = client.post(
        "/submit_qualification",
        json=WORKED_EXAMPLE,
        headers={"Idempotency-Key": "same"},
        environ_base={"REMOTE_ADDR": "198.51.100.1"},
    )
    theirs = client.post(
        "/submit_qualification",
        json={**WORKED_EXAMPLE, "accuracy": 1},
        headers={"Idempotency-Key": "same"},
        environ_base={"REMOTE_ADDR": "198.51.100.2"},
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in theirs.headers
    assert stored_count(app) == 2


@pytest.mark.parametrize("key", ["x" * 256, "has space", "tab\tkey", "caf\u00e9", ""])
def test_bad_keys_are_400(client, app, key):
    response = client.post(
        "/submit_qualification",
        json=WORKED_EXAMPLE,
        headers=[("Idempotency-Key", key.encode("utf-8").decode("latin-1"))],
    )
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert response.get_json()["errors"][0]["field"] == "Idempotency-Key"
    assert stored_count(app) == 0


def test_a_key_of_255_characters_is_fine(client):
    assert submit(client, "k" * 255).status_code == 201


def test_an_invalid_body_keeps_the_key_free(client, app):
    assert submit(client, "fix-and-retry", {**WORKED_EXAMPLE, "accuracy": 101}).status_code == 422
    assert keys_stored(app) == 0
    assert submit(client, "fix-and-retry").status_code == 201


def test_a_rate_limited_request_releases_its_key(make_app):
    app = make_app(submit_limit="1 per hour")
    client = app.test_client()
    assert submit(client, "a").status_code == 201
    assert submit(client, "b").status_code == 429
    assert keys_stored(app) == 1


def test_a_key_in_flight_is_409_and_an_abandoned_one_is_taken_over(make_app):
    clock = FrozenClock()
    app = make_app(clock=clock)
    client = app.test_client()
    digest = idempotency.fingerprint(parse_json(json.dumps(WORKED_EXAMPLE).encode()))
    with get_db(app).autocommit() as connection:  # another request holds the key, still working
        assert idempotency.claim(connection, "127.0.0.1", "busy", digest, clock()) is None

    in_flight = submit(client, "busy")
    assert in_flight.status_code == 409
    assert in_flight.mimetype == PROBLEM
    assert in_flight.headers["Retry-After"] == "1"
    assert stored_count(app) == 0

    clock.advance(61)  # its worker died before committing
    taken_over = submit(client, "busy")
    assert taken_over.status_code == 201
    assert stored_count(app) == 1


def test_keys_expire_after_24_hours(make_app):
    clock = FrozenClock()
    client = make_app(clock=clock).test_client()
    assert submit(client, "daily").status_code == 201
    clock.advance(24 * 3600 + 1)
    fresh = submit(client, "daily", {**WORKED_EXAMPLE, "accuracy": 10})
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh.headers


def test_a_replay_without_a_kept_body_is_rebuilt_from_the_submission(client, app):
    first = submit(client, "rebuild").get_json()
    with get_db(app).autocommit() as connection:
        connection.execute(text("UPDATE idempotency_keys SET response_body = NULL"))
    again = submit(client, "rebuild")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first


def test_expired_keys_are_purged(make_app):
    clock = FrozenClock()
    app = make_app(clock=clock)
    client = app.test_client()
    for key in ("old-1", "old-2"):
        assert submit(client, key).status_code == 201
    clock.advance(25 * 3600)
    assert submit(client, "new").status_code == 201
    with get_db(app).engine.connect() as connection:
        keys = connection.execute(text("SELECT key FROM idempotency_keys")).scalars().all()
    assert keys == ["new"]


def test_replays_use_neither_the_submission_nor_the_daily_quota(make_app):
    client = make_app(daily_limit="2 per day", submit_limit="5 per hour").test_client()
    assert submit(client, "once").status_code == 201  # daily 1 of 2
    for _ in range(5):
        replay = submit(client, "once")
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert submit(client, "twice").status_code == 201  # daily 2 of 2
    refused = submit(client, "thrice")
    assert refused.status_code == 429
    assert "daily request limit" in refused.get_json()["detail"]
    assert submit(client, "once").headers["Idempotent-Replayed"] == "true"  # still answered


def test_a_malformed_request_with_a_key_still_counts_against_the_daily_limit(make_app):
    client = make_app(daily_limit="2 per day").test_client()
    bad = client.post(
        "/submit_qualification", data="{", content_type="application/json", headers={"Idempotency-Key": "x"}
    )
    assert bad.status_code == 400
    assert submit(client, "y").status_code == 201
    assert submit(client, "z").status_code == 429
