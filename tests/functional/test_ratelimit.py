"""Rate limits: the submission quota, the shared daily limit, exemptions and client addresses."""

from __future__ import annotations

import pytest

from gpuq.app import runtime_of
from tests.conftest import WORKED_EXAMPLE, bearer, register, stored_count, submit_as
from tests.services import delete_prefix

PROBLEM = "application/problem+json"


def submit(client, **kwargs):
    return client.post("/submit_qualification", json=WORKED_EXAMPLE, **kwargs)


def test_eleven_quick_submissions_give_ten_201_and_one_429(client, app):
    statuses = [submit(client).status_code for _ in range(11)]
    assert statuses == [201] * 10 + [429]
    assert stored_count(app) == 10

    refused = submit(client)
    assert refused.status_code == 429
    assert refused.mimetype == PROBLEM
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert refused.headers["X-RateLimit-Limit"] == "10"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > 0
    assert "10 per 1 hour" in refused.get_json()["detail"]
    assert client.get("/leaderboard").status_code == 200
    assert stored_count(app) == 10


def test_headers_count_down(client):
    remaining = [int(submit(client).headers["X-RateLimit-Remaining"]) for _ in range(3)]
    assert remaining == [9, 8, 7]


def test_daily_limit_counts_every_limited_route_together(make_app):
    app = make_app(daily_limit="4 per day")
    client = app.test_client()
    submission_id = submit(client).get_json()["submission_id"]  # 1
    assert client.get(f"/submissions/{submission_id}").status_code == 200  # 2
    assert client.get("/submissions/999999").status_code == 404  # 3
    assert submit(client).status_code == 201  # 4
    over = client.get(f"/submissions/{submission_id}")
    assert over.status_code == 429
    assert over.mimetype == PROBLEM
    assert "daily request limit" in over.get_json()["detail"]
    assert int(over.headers["Retry-After"]) > 0
    assert submit(client).status_code == 429
    assert stored_count(app) == 2


def test_exempt_routes_stay_open_past_the_daily_limit(make_app):
    client = make_app(daily_limit="1 per day").test_client()
    assert submit(client).status_code == 201
    assert submit(client).status_code == 429
    for _ in range(5):
        assert client.get("/").status_code == 200
        assert client.get("/leaderboard").status_code == 200


def test_spoofed_forwarded_for_does_not_buy_a_new_quota(make_app):
    client = make_app(submit_limit="2 per hour").test_client()
    statuses = [submit(client, headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(3)]
    assert statuses == [201, 201, 429]


def test_trusted_proxy_count_uses_the_forwarded_address(make_app):
    client = make_app(submit_limit="1 per hour", trusted_proxies=1).test_client()
    assert submit(client, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 201
    assert submit(client, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 429
    assert submit(client, headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 201


def test_addresses_have_separate_quotas(make_app):
    client = make_app(submit_limit="1 per hour").test_client()
    assert submit(client, environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code == 201
    assert submit(client, environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code == 429
    assert submit(client, environ_base={"REMOTE_ADDR": "198.51.100.2"}).status_code == 201


@pytest.mark.parametrize("limit", ["3 per minute", "3/hour;10/day"])
def test_configured_submission_limits_apply(make_app, limit):
    client = make_app(submit_limit=limit).test_client()
    assert [submit(client).status_code for _ in range(4)] == [201, 201, 201, 429]


def lose_counters(make_app, backend, **settings):
    """An app whose limit counters are gone: Redis flushed (PostgreSQL + Redis), or a new
    process's memory (embedded); the database keeps its submissions."""
    if "redis_url" in backend:
        delete_prefix(backend["redis_url"], backend["redis_prefix"])
    return make_app(**settings)  # embedded: a second app starts with empty memory counters


def test_an_exhausted_address_stays_exhausted_when_the_counters_are_lost(make_app, backend):
    app = make_app(submit_limit="2 per hour")
    client = app.test_client()
    assert [submit(client).status_code for _ in range(3)] == [201, 201, 429]

    fresh = lose_counters(make_app, backend, submit_limit="2 per hour").test_client()
    refused = submit(fresh)
    assert refused.status_code == 429
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 3500 <= int(refused.headers["Retry-After"]) <= 3600  # the oldest stored one frees first
    submit_quota = [q for q in fresh.get("/quota").get_json()["limits"] if q["scope"] == "submit"]
    assert submit_quota[0]["remaining"] == 0
    assert stored_count(app) == 2


def test_a_participant_stays_exhausted_when_the_counters_are_lost(make_app, backend):
    app = make_app(participant_limit="1 per hour")
    client = app.test_client()
    key = register(client, "alice")
    assert submit_as(client, key, "10.0.0.1").status_code == 201

    fresh = lose_counters(make_app, backend, participant_limit="1 per hour").test_client()
    refused = submit_as(fresh, key, "10.0.0.2")
    assert refused.status_code == 429
    assert "participant" in refused.get_json()["detail"]
    assert stored_count(app) == 1


def test_a_venue_behind_one_address_is_limited_per_participant(make_app):
    """Eleven participants behind one NAT: each has their own submissions and daily requests;
    the address's quota is for anonymous submissions only."""
    app = make_app(submit_limit="2 per hour", daily_limit="3 per day", participant_limit="1 per hour")
    client = app.test_client()
    registry = runtime_of(app).participants  # as an organiser would: the venue's address uses nothing
    keys = [registry.create(f"team{i}", is_admin=False, actor="organiser")[1] for i in range(11)]
    for key in keys:
        assert submit_as(client, key, "192.0.2.7").status_code == 201
    assert stored_count(app) == 11
    # Each participant's daily requests are their own: two more reads each, then the fourth is refused.
    first = keys[0]
    statuses = [
        client.get(
            "/participants/me", headers=bearer(first), environ_base={"REMOTE_ADDR": "192.0.2.7"}
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert (
        client.get(
            "/participants/me", headers=bearer(keys[1]), environ_base={"REMOTE_ADDR": "192.0.2.7"}
        ).status_code
        == 200
    )
    # The address's anonymous quota is untouched by the keyed submissions.
    assert [submit_as(client, None, "192.0.2.7").status_code for _ in range(3)] == [201, 201, 429]


def test_the_keyed_address_ceiling_limits_keyed_submissions_per_address(make_app):
    app = make_app(keyed_address_limit="2 per hour")
    client = app.test_client()
    keys = [register(client, name) for name in ("ann", "bob", "cat")]
    assert [submit_as(client, key, "192.0.2.8").status_code for key in keys] == [201, 201, 429]
    refused = submit_as(client, keys[2], "192.0.2.8")
    assert "API key from this address" in refused.get_json()["detail"]
    assert submit_as(client, keys[2], "192.0.2.9").status_code == 201  # another address
    assert submit_as(client, None, "192.0.2.8").status_code == 201  # anonymous: the address quota
    quota = client.get(
        "/quota", headers=bearer(keys[0]), environ_base={"REMOTE_ADDR": "192.0.2.8"}
    ).get_json()
    assert {q["scope"] for q in quota["limits"]} == {"daily", "participant", "keyed"}


def test_a_bad_key_counts_against_the_address(make_app):
    client = make_app(daily_limit="2 per day").test_client()
    wrong = {"Authorization": "Bearer not-a-key"}
    assert [client.get("/participants/me", headers=wrong).status_code for _ in range(3)] == [401, 401, 429]
    assert client.get("/submissions/1").status_code == 429  # the same address, anonymous


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_client_without_submissions_is_seeded_once_not_on_every_read(store, request):
    """A log seeded with nothing must still count as seeded, else every read of /quota
    (outside every limit) would cost a database query."""
    import redis as redis_py

    from gpuq.config import Settings
    from gpuq.ratelimit import RateLimits

    asked = []

    def history(scope, who, since, limit, connection):
        asked.append((scope, who))
        return []

    client = None
    settings = Settings()
    if store == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        settings = Settings(redis_url=url, redis_prefix=prefix)
        client = redis_py.Redis.from_url(url)
    try:
        limits = RateLimits(settings, client, history=history)
        for _ in range(5):
            limits.usage("192.0.2.50")
        assert asked == [("submit", "192.0.2.50")]
    finally:
        if client is not None:
            client.close()
