"""What operators see, through the in-process app: request ids (header, problem bodies, log
lines), the access line, domain events in the log, GET /metrics and who may read it, and
what the metrics count (this process's registry: no multiprocess directory here)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpuq import logs
from gpuq.config import Settings
from tests.conftest import WORKED_EXAMPLE, bearer, make_admin, register, submit_as

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
NEW_PROFILE = {
    "weights": {
        "gpu_utilization": 0.4,
        "memory_usage": 0.1,
        "power_efficiency": 0.2,
        "completion_time": 0.1,
        "accuracy": 0.2,
    },
    "time_best": 10,
    "time_worst": 120,
}


@pytest.fixture
def log_lines() -> Iterator[Any]:
    """The JSON lines the service logs meanwhile (formatted as the server formats them,
    while the request is being answered)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    lines.text = stream.getvalue  # type: ignore[attr-defined]
    yield lines
    root.removeHandler(handler)


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "gpuq.access"]


def scrape(client: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# Request ids


def test_a_sane_request_id_is_echoed_in_the_header_the_problem_body_and_the_log(client, log_lines):
    answer = client.post(
        "/submit_qualification",
        json={**WORKED_EXAMPLE, "gpu_utilization": 101},
        headers={"X-Request-ID": "client-chosen:42"},
    )
    assert answer.status_code == 422
    assert answer.headers["X-Request-ID"] == "client-chosen:42"
    assert answer.get_json()["request_id"] == "client-chosen:42"
    (line,) = access_lines(log_lines())
    assert line["request_id"] == "client-chosen:42"
    assert (line["route"], line["status"]) == ("/submit_qualification", 422)


@pytest.mark.parametrize("given", ["", "x" * 129, "two words", "tab\there", "caf\u00e9"])
def test_a_request_id_that_is_not_sane_is_replaced_by_a_new_one(client, given):
    answer = client.get("/submissions/999999", headers={"X-Request-ID": given})
    assert answer.status_code == 404
    echoed = answer.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(echoed) and echoed != given
    assert answer.get_json()["request_id"] == echoed


def test_every_request_gets_its_own_id_also_when_refused_before_routing(make_app):
    client = make_app(daily_limit="1 per day").test_client()
    ids = set()
    for path, status in (
        ("/leaderboard?api_key=gpuq_x", 400),  # the misplaced-key check
        ("/submissions/999999", 404),
        ("/submissions/999999", 429),  # the daily limit
        ("/admin/audit", 401),  # the admin guard
        ("/nowhere", 404),  # no route
    ):
        answer = client.get(path)
        assert answer.status_code == status
        assert GENERATED_ID.fullmatch(answer.headers["X-Request-ID"])
        assert answer.get_json()["request_id"] == answer.headers["X-Request-ID"]
        ids.add(answer.headers["X-Request-ID"])
    assert len(ids) == 5


# The access line and the domain events


def test_one_access_line_per_request_with_route_status_duration_and_participant(client, log_lines):
    key = register(client, "alice")
    created = submit_as(client, key)
    assert created.status_code == 201
    submission_id = created.get_json()["submission_id"]
    assert client.get(f"/submissions/{submission_id}").status_code == 200
    assert client.get(f"/leaderboard?api_key={key}").status_code == 400  # a misplaced key

    lines = log_lines()
    register_line, submit_line, detail_line, misplaced_line = access_lines(lines)
    assert (submit_line["method"], submit_line["route"], submit_line["status"]) == (
        "POST",
        "/submit_qualification",
        201,
    )
    assert submit_line["participant"] == "alice"
    assert isinstance(submit_line["duration_ms"], float) and submit_line["duration_ms"] >= 0
    assert submit_line["address"] == "10.0.0.1"
    assert (detail_line["route"], detail_line["path"]) == (
        "/submissions/<int:submission_id>",
        f"/submissions/{submission_id}",
    )
    assert detail_line["participant"] is None  # no key sent
    assert register_line["participant"] is None and misplaced_line["path"] == "/leaderboard"
    assert len({line["request_id"] for line in access_lines(lines)}) == 4

    (accepted,) = [line for line in lines if line.get("event") == "submission.accepted"]
    assert accepted["request_id"] == submit_line["request_id"]
    assert (accepted["submission_id"], accepted["participant"], accepted["score"]) == (
        submission_id,
        "alice",
        87.95,
    )
    # The key never reaches a log line: not from the Authorization header, nor the query.
    assert key not in log_lines.text() and key.split("_")[-1] not in log_lines.text()


def test_slot_changes_moderation_and_scoring_changes_are_logged_and_counted(app, client, log_lines):
    admin = make_admin(app)
    before = scrape(client)
    key = register(client, "alice")
    assert submit_as(client, key).status_code == 201  # the free slot goes to alice at once
    assert (
        client.post(
            "/admin/participants/alice/disqualify", json={"reason": "shared keys"}, headers=bearer(admin)
        ).status_code
        == 200
    )
    assert client.put("/admin/scoring", json=NEW_PROFILE, headers=bearer(admin)).status_code == 200

    events = {line["event"]: line for line in log_lines() if "event" in line}
    assert (events["slot.grant"]["slot"], events["slot.grant"]["participant"]) == ("gpu-0", "alice")
    assert events["slot.revocation"]["participant"] == "alice"
    disqualified = events["participant.disqualify"]
    assert (disqualified["target"], disqualified["reason"]) == ("participant:alice", "shared keys")
    assert disqualified["actor"] == "organiser" and "request_id" in disqualified
    assert (events["scoring.change"]["previous_version"], events["scoring.change"]["version"]) == (1, 2)
    after = scrape(client)
    for action in ("grant", "revocation"):
        grown = value(after, "gpuq_slot_changes_total", action=action)
        assert grown - value(before, "gpuq_slot_changes_total", action=action) == 1


# GET /metrics: who may read it


def test_metrics_answer_clients_on_this_host_only_without_a_token(client):
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    assert answer.headers["Cache-Control"] == "no-store"
    assert "gpuq_build_info{" in answer.get_data(as_text=True)
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert "GPUQ_METRICS_TOKEN" in refused.get_json()["detail"]
    assert "gpuq_" not in refused.get_data(as_text=True)


def test_with_a_token_set_metrics_need_it_from_every_address(make_app):
    client = make_app(metrics_token="s3cret-scraper-token").test_client()
    for headers in ({}, bearer("wrong"), {"Authorization": "Basic czNjcmV0LXNjcmFwZXItdG9rZW4="}):
        refused = client.get("/metrics", headers=headers)  # from loopback, too
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert "gpuq_" not in refused.get_data(as_text=True)
    allowed = client.get(
        "/metrics", headers=bearer("s3cret-scraper-token"), environ_base={"REMOTE_ADDR": "10.0.0.7"}
    )
    assert allowed.status_code == 200 and "gpuq_http_requests_total" in allowed.get_data(as_text=True)
    assert "s3cret" not in repr(Settings(metrics_token="s3cret-scraper-token"))


def test_metrics_are_outside_the_rate_limits(make_app):
    client = make_app(daily_limit="1 per day").test_client()
    assert client.get("/submissions/999999").status_code == 404
    assert client.get("/submissions/999999").status_code == 429
    assert [client.get("/metrics").status_code for _ in range(5)] == [200] * 5


# What the metrics count


def test_requests_are_counted_by_url_rule_and_refusals_by_reason_and_scope(make_app):
    client = make_app(submit_limit="2 per hour").test_client()
    before = scrape(client)
    statuses = [submit_as(client, address="10.9.0.1").status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    assert submit_as(client, address="10.9.0.1", accuracy=-1).status_code == 422
    assert client.post("/submit_qualification", data="{", content_type="application/json").status_code == 400
    assert client.get("/submissions/1").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "gpuq_http_requests_total"
    submit = {"route": "/submit_qualification", "method": "POST"}
    assert grew(requests, **submit, status="201") == 2
    assert grew(requests, **submit, status="429") == 1
    assert grew(requests, **submit, status="422") == 1
    assert grew(requests, **submit, status="400") == 1
    assert grew(requests, route="/submissions/<int:submission_id>", method="GET", status="200") == 1
    assert grew(requests, route="unmatched", method="GET", status="404") == 1
    assert grew("gpuq_http_request_duration_seconds_count", **submit) == 5
    assert grew("gpuq_submissions_accepted_total") == 2
    assert grew("gpuq_submissions_refused_total", reason="rate_limited") == 1
    assert grew("gpuq_submissions_refused_total", reason="invalid") == 1
    assert grew("gpuq_submissions_refused_total", reason="malformed") == 1
    assert grew("gpuq_rate_limit_refusals_total", scope="submit") == 1
    labels = {v for (_name, pairs) in after for _k, v in pairs}
    assert not any("10.9.0.1" in v or v.startswith("/submissions/1") or v == "/no/such/page" for v in labels)


def test_open_streams_are_a_gauge_and_streams_are_counted_but_not_timed(client):
    stream = {"route": "/leaderboard/stream", "method": "GET"}
    before = scrape(client)
    response = client.get("/leaderboard/stream")
    assert response.status_code == 200
    assert next(response.response)  # the stream runs
    during = scrape(client)
    response.close()
    after = scrape(client)
    opened = value(before, "gpuq_streams_open")
    assert (value(during, "gpuq_streams_open"), value(after, "gpuq_streams_open")) == (opened + 1, opened)
    assert value(after, "gpuq_http_requests_total", **stream, status="200") == (
        value(before, "gpuq_http_requests_total", **stream, status="200") + 1
    )
    assert ("gpuq_http_request_duration_seconds_count", frozenset(stream.items())) not in after
