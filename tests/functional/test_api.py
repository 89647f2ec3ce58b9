"""The specified routes through the Flask test client, on both backends."""

from __future__ import annotations

import re

from tests.conftest import SPEC_CURL_BODY, WORKED_EXAMPLE, FrozenClock, stored_count

PROBLEM = "application/problem+json"


def submit(client, body=None, **kwargs):
    return client.post("/submit_qualification", json=body or WORKED_EXAMPLE, **kwargs)


def test_health_reports_each_dependency(client, backend):
    response = client.get("/")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "healthy"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["timestamp"])
    assert body["checks"]["database"]["status"] == "up"
    expected_redis = "up" if "redis_url" in backend else "not_configured"
    assert body["checks"]["redis"]["status"] == expected_redis


def test_health_timestamp_comes_from_the_clock(make_app):
    client = make_app(clock=FrozenClock()).test_client()
    assert client.get("/").get_json()["timestamp"] == "2026-01-11T16:58:19.862Z"


def test_submit_scores_stores_and_points_to_the_submission(client, app):
    response = submit(client)
    assert response.status_code == 201
    body = response.get_json()
    assert body["success"] is True
    assert body["score"] == 87.95
    assert body["rank"] == 1
    assert body["breakdown"]["power_efficiency"] == {"value": 95, "points": 23.75, "weight": 25}
    assert response.headers["Location"] == f"/submissions/{body['submission_id']}"
    assert stored_count(app) == 1

    stored = client.get(response.headers["Location"])
    assert stored.status_code == 200
    detail = stored.get_json()
    assert detail["submission_id"] == body["submission_id"]
    assert detail["score"] == 87.95
    assert detail["rank"] == 1
    assert detail["profile_version"] == 1
    assert detail["breakdown"] == body["breakdown"]


def test_specification_curl_body_scores_83_31(client):
    response = submit(client, SPEC_CURL_BODY)
    assert response.status_code == 201
    assert response.get_json()["score"] == 83.31


def test_metrics_are_kept_to_four_places_rounded_half_up(client):
    body = {**WORKED_EXAMPLE, "gpu_utilization": 0.30000000000000004, "accuracy": 12.34565}
    response = submit(client, body)
    assert response.status_code == 201
    stored = client.get(response.headers["Location"]).get_json()["breakdown"]
    assert stored["gpu_utilization"]["value"] == 0.3
    assert stored["accuracy"]["value"] == 12.3457


def test_unknown_submission_is_a_problem_404(client):
    response = client.get("/submissions/999999")
    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert response.get_json()["detail"] == "no submission with id 999999"


def test_leaderboard_orders_by_score_and_breaks_ties_by_earlier_submission(client):
    low = submit(client, {**WORKED_EXAMPLE, "accuracy": 10}).get_json()["submission_id"]
    first_tie = submit(client).get_json()["submission_id"]
    second_tie = submit(client).get_json()["submission_id"]
    top = submit(client, {**WORKED_EXAMPLE, "accuracy": 100}).get_json()["submission_id"]

    board = client.get("/leaderboard").get_json()
    assert [e["submission_id"] for e in board["leaderboard"]] == [top, first_tie, second_tie, low]
    assert [e["rank"] for e in board["leaderboard"]] == [1, 2, 3, 4]
    assert board["total"] == 4 and board["limit"] == 10 and board["offset"] == 0
    assert set(board["leaderboard"][0]) == {
        "rank",
        "submission_id",
        "participant",
        "score",
        "submitted_at",
        "provenance",
    }
    assert board["leaderboard"][0]["provenance"] == "self-reported"
    assert board["view"] == "best"
    assert client.get(f"/submissions/{second_tie}").get_json()["rank"] == 3

    page = client.get("/leaderboard?limit=2&offset=1").get_json()
    assert [(e["rank"], e["submission_id"]) for e in page["leaderboard"]] == [(2, first_tie), (3, second_tie)]
    assert page["total"] == 4


def test_rank_in_submit_response_counts_better_earlier_entries(client):
    submit(client, {**WORKED_EXAMPLE, "accuracy": 100})
    submit(client)
    assert submit(client).get_json()["rank"] == 3


def test_empty_leaderboard(client):
    assert client.get("/leaderboard").get_json() == {
        "leaderboard": [],
        "view": "best",
        "total": 0,
        "limit": 10,
        "offset": 0,
    }


def test_leaderboard_limit_is_capped_at_100(client):
    assert client.get("/leaderboard?limit=100").status_code == 200
    for query in (
        "limit=101",
        "limit=0",
        "limit=-1",
        "limit=abc",
        "offset=-1",
        "offset=1.5",
        "limit=%EF%BC%91",
    ):
        response = client.get(f"/leaderboard?{query}")
        assert response.status_code == 400, query
        assert response.mimetype == PROBLEM
        assert response.get_json()["errors"][0]["field"] in ("limit", "offset")


def test_unknown_route_and_wrong_method_are_problems(client):
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.mimetype == PROBLEM
    wrong = client.get("/submit_qualification")
    assert wrong.status_code == 405 and wrong.mimetype == PROBLEM
    assert "POST" in wrong.headers["Allow"]


def test_database_down_answers_503_with_retry_after(make_app, backend):
    # A database nobody listens on: connecting fails at once.
    app = make_app()
    broken = make_app(database_url="postgresql://postgres@127.0.0.1:1/none", redis_url="")
    response = submit(broken.test_client())
    assert response.status_code == 503
    assert response.mimetype == PROBLEM
    assert int(response.headers["Retry-After"]) > 0
    health = broken.test_client().get("/")
    assert health.status_code == 503
    assert health.get_json()["status"] == "unhealthy"
    assert stored_count(app) == 0


def test_an_unexpected_error_is_a_500_problem_without_details(make_app):
    app = make_app()

    def broken():
        raise RuntimeError("secret internals /etc/passwd")

    app.add_url_rule("/broken", "broken", broken)
    response = app.test_client().get("/broken")
    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    body = response.get_data(as_text=True)
    assert "secret" not in body and "Traceback" not in body
    assert response.get_json()["detail"] == "an unexpected error occurred; it has been logged"
