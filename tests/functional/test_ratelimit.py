"""Rate limits: the submission quota, the shared daily limit, exemptions and client addresses."""

from __future__ import annotations

import pytest

from tests.conftest import WORKED_EXAMPLE, stored_count

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
