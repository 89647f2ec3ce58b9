"""What operators see, through the in-process app: request ids (header, problem bodies, log
lines), the access line, domain events in the log."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gpuq import logs
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


def test_slot_changes_moderation_and_scoring_changes_are_logged(app, client, log_lines):
    admin = make_admin(app)
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
