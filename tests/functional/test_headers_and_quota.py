"""Security headers on every response, and GET /quota."""

from __future__ import annotations

import pytest

from tests.conftest import WORKED_EXAMPLE, bearer, make_admin


@pytest.mark.parametrize(
    ("method", "path", "no_store"),
    [
        ("GET", "/", True),  # health is always fresh
        ("GET", "/leaderboard", False),
        ("GET", "/openapi.json", False),
        ("GET", "/docs", False),
        ("GET", "/static/docs.js", False),
        ("GET", "/quota", True),
        ("GET", "/nope", True),
        ("DELETE", "/leaderboard", True),
    ],
)
def test_every_response_says_nosniff_and_private_or_error_ones_are_not_cached(client, method, path, no_store):
    with client.open(path, method=method) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert (response.headers.get("Cache-Control") == "no-store") is no_store


def test_submissions_are_not_cached(client):
    created = client.post("/submit_qualification", json=WORKED_EXAMPLE)
    assert created.headers["Cache-Control"] == "no-store"
    assert client.get(created.headers["Location"]).headers["Cache-Control"] == "no-store"


def test_answers_that_carry_a_key_or_one_participants_data_are_not_cached(app, client):
    registered = client.post("/participants", json={"name": "alice"})
    assert registered.status_code == 201 and registered.headers["Cache-Control"] == "no-store"
    key = registered.get_json()["api_key"]
    admin = make_admin(app)
    for method, path, who in [
        ("GET", "/participants/me", key),
        ("GET", "/slots", key),
        ("POST", "/participants/me/key", key),
        ("GET", "/admin/audit", admin),
        ("GET", "/admin/export", admin),
        ("POST", "/admin/participants/alice/key", admin),
    ]:
        response = client.open(path, method=method, headers=bearer(who))
        assert response.status_code == 200, (path, response.get_json())
        assert response.headers["Cache-Control"] == "no-store", path
        if path == "/participants/me/key":
            key = response.get_json()["api_key"]
    # The same public page without a key stays cacheable.
    assert "Cache-Control" not in client.get("/participants/alice").headers


def test_the_docs_page_has_a_strict_content_security_policy(client):
    response = client.get("/docs")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy
    page = response.get_data(as_text=True)
    assert "<script>" not in page  # every script is a file from this service
    assert "//" not in page.replace("<!doctype", "")  # no absolute URL: nothing from another host


def test_docs_assets_are_served_by_the_service(client):
    for asset in (
        "/static/swagger-ui/swagger-ui-bundle.js",
        "/static/swagger-ui/swagger-ui.css",
        "/static/docs.js",
    ):
        with client.get(asset) as response:
            assert response.status_code == 200


def test_errors_carry_no_server_detail(client):
    body = client.post("/submit_qualification", data="{", content_type="application/json").get_data(
        as_text=True
    )
    for leak in ("Traceback", "werkzeug", "gunicorn", "/work/", 'File "'):
        assert leak not in body


def test_quota_reports_what_the_headers_report_and_uses_nothing(make_app):
    client = make_app(submit_limit="5 per hour", daily_limit="50 per day").test_client()
    before = client.get("/quota").get_json()
    assert before["enabled"] is True
    assert {(q["scope"], q["amount"], q["remaining"]) for q in before["limits"]} == {
        ("daily", 50, 50),
        ("submit", 5, 5),
    }
    assert client.get("/quota").get_json()["limits"] == before["limits"]  # reading it used nothing

    created = client.post("/submit_qualification", json=WORKED_EXAMPLE)
    after = {q["scope"]: q for q in client.get("/quota").get_json()["limits"]}
    assert after["submit"]["remaining"] == int(created.headers["X-RateLimit-Remaining"]) == 4
    assert after["submit"]["reset_at"] == pytest.approx(int(created.headers["X-RateLimit-Reset"]), abs=1)
    assert after["daily"]["remaining"] == 49


def test_quota_when_limits_are_off(make_app):
    body = make_app(ratelimit_enabled=False).test_client().get("/quota").get_json()
    assert body["enabled"] is False and body["limits"] == []
