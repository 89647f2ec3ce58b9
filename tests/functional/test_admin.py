"""Admins: who may call /admin, the first admin from the command line, moderation,
scoring profile changes (dry run and rescoring), the audit trail and the export."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select, text

from gpuq import cli
from gpuq.api.openapi import OPERATIONS
from gpuq.scoring import METRICS, Profile, score
from gpuq.serialize import number
from gpuq.store.db import get_db
from gpuq.store.models import Submission
from gpuq.submissions.profiles import parse
from tests.conftest import bearer, make_admin, register, submit_as, truncate
from tests.strategies import metric_sets

METHODS = ("get", "post", "put", "patch", "delete")
ADMIN_PATHS = sorted({path for path, _ in OPERATIONS if path.startswith("/admin")})
NEW_WEIGHTS = {
    "gpu_utilization": 0.4,
    "memory_usage": 0.1,
    "power_efficiency": 0.2,
    "completion_time": 0.1,
    "accuracy": 0.2,
}
NEW_PROFILE = {"weights": NEW_WEIGHTS, "time_best": 10, "time_worst": 120}


def snapshot(app) -> dict[str, list[str]]:
    """Every row of every table, to show that nothing changed."""
    engine = get_db(app).engine
    with engine.connect() as connection:
        return {
            table: sorted(str(row) for row in connection.execute(text(f"SELECT * FROM {table}")))
            for table in inspect(engine).get_table_names()
        }


def concrete(path: str, submission_id: int) -> str:
    return path.replace("{name}", "alice").replace("{submission_id}", str(submission_id))


def test_every_admin_route_and_method_refuses_non_admins_and_changes_nothing(app, client):
    alice = register(client, "alice")
    submission_id = submit_as(client, alice).get_json()["submission_id"]
    before = snapshot(app)
    checked = 0
    for path in [*ADMIN_PATHS, "/admin", "/admin/no-such-route"]:
        for method in METHODS:
            url = concrete(path, submission_id)
            body = {"reason": "x", **NEW_PROFILE, "name": "mallory", "admin": True}
            for headers, status in (({}, 401), (bearer(alice), 403)):
                response = client.open(url, method=method.upper(), json=body, headers=headers)
                assert response.status_code == status, (method, url, headers)
                assert response.mimetype == "application/problem+json"
                if status == 401:
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                checked += 1
    assert checked >= len(ADMIN_PATHS) * len(METHODS) * 2
    assert snapshot(app) == before


def test_admin_routes_answer_an_admin(app, client):
    admin = make_admin(app)
    assert client.get("/admin/scoring", headers=bearer(admin)).status_code == 200
    assert client.get("/admin/no-such-route", headers=bearer(admin)).status_code == 404


def test_the_first_admin_comes_from_the_command_line(app, client, backend, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", backend["database_url"])
    runner = CliRunner()
    result = runner.invoke(cli.main, ["participants", "create", "Organiser", "--admin"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("gpuq_")
    assert client.get("/admin/scoring", headers=bearer(key)).status_code == 200
    again = runner.invoke(cli.main, ["participants", "create", "organiser"])
    assert again.exit_code == 1 and "taken" in again.output
    rotated = runner.invoke(cli.main, ["participants", "rotate-key", "organiser"])
    assert rotated.exit_code == 0
    assert client.get("/admin/scoring", headers=bearer(key)).status_code == 401
    new_key = rotated.stdout.strip().splitlines()[-1]
    assert client.get("/admin/scoring", headers=bearer(new_key)).status_code == 200
    actions = [e["action"] for e in client.get("/admin/audit", headers=bearer(new_key)).get_json()["events"]]
    assert actions == ["key.rotate", "participant.create"]


def test_an_admin_creates_participants_and_admins(app, client):
    admin = make_admin(app)
    made = client.post("/admin/participants", json={"name": "judge", "admin": True}, headers=bearer(admin))
    assert made.status_code == 201 and made.get_json()["is_admin"] is True
    assert client.get("/admin/audit", headers=bearer(made.get_json()["api_key"])).status_code == 200
    taken = client.post("/admin/participants", json={"name": "JUDGE"}, headers=bearer(admin))
    assert taken.status_code == 409


# Moderation.


def board_ids(client, view="best"):
    return [e["submission_id"] for e in client.get(f"/leaderboard?view={view}").get_json()["leaderboard"]]


def test_a_disqualified_submission_leaves_the_ranking_but_stays_stored(app, client):
    admin = make_admin(app)
    alice = register(client, "alice")
    best = submit_as(client, alice, accuracy=100).get_json()["submission_id"]
    second = submit_as(client, alice, accuracy=50).get_json()["submission_id"]
    anonymous = submit_as(client, None, accuracy=70, address="10.0.0.2").get_json()["submission_id"]
    assert board_ids(client) == [best, anonymous]

    response = client.post(
        f"/admin/submissions/{best}/disqualify", json={"reason": "impossible metrics"}, headers=bearer(admin)
    )
    assert response.status_code == 200
    assert response.get_json()["before"]["disqualified"] is False
    assert response.get_json()["after"]["disqualified"] is True
    assert board_ids(client) == [anonymous, second]  # alice's next best takes her place
    assert board_ids(client, "all") == [anonymous, second]
    detail = client.get(f"/submissions/{best}").get_json()
    assert detail["status"] == "disqualified" and detail["rank"] is None
    again = client.post(f"/admin/submissions/{best}/disqualify", json={"reason": "x"}, headers=bearer(admin))
    assert again.status_code == 409

    client.post(
        f"/admin/submissions/{best}/reinstate", json={"reason": "appeal upheld"}, headers=bearer(admin)
    )
    assert board_ids(client) == [best, anonymous]
    assert (
        client.post(
            f"/admin/submissions/{anonymous}/disqualify", json={"reason": "spam"}, headers=bearer(admin)
        ).status_code
        == 200
    )
    assert board_ids(client) == [best]
    assert (
        client.post(
            "/admin/submissions/999999/disqualify", json={"reason": "x"}, headers=bearer(admin)
        ).status_code
        == 404
    )
    assert (
        client.post(f"/admin/submissions/{best}/disqualify", json={}, headers=bearer(admin)).status_code
        == 422
    )
    # What does not exist answers 404 whatever the body says (it is looked up first).
    for unknown in (
        "/admin/submissions/999999999999999999999/disqualify",
        "/admin/participants/nobody/reinstate",
    ):
        answer = client.post(unknown, data="not json", content_type="text/plain", headers=bearer(admin))
        assert answer.status_code == 404, answer.get_json()


def test_a_disqualified_participant_leaves_the_ranking_and_cannot_submit(app, client):
    admin = make_admin(app)
    alice, bob = register(client, "alice"), register(client, "bob")
    a = [submit_as(client, alice, accuracy=x).get_json()["submission_id"] for x in (100, 90)]
    b = submit_as(client, bob, accuracy=50, address="10.0.0.2").get_json()["submission_id"]

    client.post("/admin/participants/alice/disqualify", json={"reason": "shared keys"}, headers=bearer(admin))
    assert board_ids(client) == [b] and board_ids(client, "all") == [b]
    refused = submit_as(client, alice)
    assert refused.status_code == 403 and "disqualified" in refused.get_json()["detail"]
    page = client.get("/participants/alice").get_json()
    assert page["disqualified"] is True and page["rank"] is None and page["submission_count"] == 2

    client.post("/admin/participants/alice/reinstate", json={"reason": "cleared"}, headers=bearer(admin))
    assert board_ids(client) == [a[0], b]
    assert board_ids(client, "all") == [a[0], a[1], b]
    assert submit_as(client, alice).status_code == 201


def test_every_admin_action_is_in_the_audit_trail(app, client):
    admin = make_admin(app, "organiser")
    register(client, "alice")
    sid = submit_as(client).get_json()["submission_id"]
    client.post(f"/admin/submissions/{sid}/disqualify", json={"reason": "r1"}, headers=bearer(admin))
    client.post("/admin/participants/alice/disqualify", json={"reason": "r2"}, headers=bearer(admin))
    client.put("/admin/scoring", json={**NEW_PROFILE, "reason": "r3"}, headers=bearer(admin))
    client.put("/admin/scoring?dry_run=true", json=NEW_PROFILE, headers=bearer(admin))  # not an action

    trail = client.get("/admin/audit", headers=bearer(admin)).get_json()
    events = trail["events"]
    assert trail["total"] == 3
    assert [(e["action"], e["target"], e["reason"]) for e in events] == [
        ("scoring.change", "scoring", "r3"),
        ("participant.disqualify", "participant:alice", "r2"),
        ("submission.disqualify", f"submission:{sid}", "r1"),
    ]
    assert all(e["actor"] == "organiser" and e["at"].endswith("Z") for e in events)
    assert events[0]["before"]["version"] == 1 and events[0]["after"]["version"] == 2
    assert events[0]["after"]["weight_gpu_utilization"] == "0.4"
    assert events[1]["before"]["disqualified"] is False and events[1]["after"]["disqualified"] is True
    paged = client.get("/admin/audit?limit=1&offset=1", headers=bearer(admin)).get_json()["events"]
    assert [e["action"] for e in paged] == ["participant.disqualify"]


# Scoring profiles.


def stored_rows(app):
    """(id, score, profile_version, the five metrics, the five points) of every submission, as Decimals."""
    table = Submission.__table__
    columns = [table.c.id, table.c.score, table.c.profile_version]
    columns += [table.c[m] for m in METRICS] + [table.c[f"points_{m}"] for m in METRICS]
    with get_db(app).connect() as connection:
        return connection.execute(select(*columns).order_by(table.c.id)).all()


def test_get_scoring_shows_the_active_profile(app, client):
    admin = make_admin(app)
    profile = client.get("/admin/scoring", headers=bearer(admin)).get_json()
    assert profile["version"] == 1
    assert profile["weights"] == {
        "gpu_utilization": 0.25,
        "memory_usage": 0.2,
        "power_efficiency": 0.25,
        "completion_time": 0.15,
        "accuracy": 0.15,
    }
    assert (profile["time_best"], profile["time_worst"]) == (0, 90)


def test_a_dry_run_reports_the_change_and_changes_nothing(app, client):
    admin = make_admin(app)
    alice, bob = register(client, "alice"), register(client, "bob")
    fast = submit_as(client, alice, completion_time=5, gpu_utilization=50).get_json()["submission_id"]
    busy = submit_as(client, bob, completion_time=80, gpu_utilization=100, address="10.0.0.2").get_json()
    before = snapshot(app)

    response = client.put("/admin/scoring?dry_run=true", json=NEW_PROFILE, headers=bearer(admin))
    assert response.status_code == 200
    report = response.get_json()
    assert report["dry_run"] is True and report["changed"] is True and report["version"] is None
    assert report["rescored"] == 2 and report["scores_changed"] == 2
    leaders = {e["submission_id"]: e for e in report["leaders"]}
    assert leaders[busy["submission_id"]]["previous_score"] == busy["score"]
    assert [e["previous_rank"] for e in report["leaders"]] != [e["rank"] for e in report["leaders"]]
    assert {fast, busy["submission_id"]} == set(leaders)
    assert snapshot(app) == before
    assert client.get("/admin/scoring", headers=bearer(admin)).get_json()["version"] == 1


def test_applying_a_profile_rescores_every_submission_with_the_scoring_module(app, client):
    admin = make_admin(app)
    alice = register(client, "alice")
    submit_as(client, alice, completion_time=5)
    submit_as(client, alice, completion_time=100, accuracy=99.9999)
    submit_as(client, None, completion_time=45.3333, memory_usage=12.3456)
    dry = client.put("/admin/scoring?dry_run=true", json=NEW_PROFILE, headers=bearer(admin)).get_json()

    applied = client.put(
        "/admin/scoring", json={**NEW_PROFILE, "reason": "more weight on compute"}, headers=bearer(admin)
    )
    assert applied.status_code == 200
    result = applied.get_json()
    assert (result["previous_version"], result["version"], result["rescored"]) == (1, 2, 3)
    assert result["leaders"] == dry["leaders"]  # the dry run said exactly what happened
    new = Profile(
        weights={m: Decimal(str(w)) for m, w in NEW_WEIGHTS.items()},
        time_best=Decimal(10),
        time_worst=Decimal(120),
    )
    for row in stored_rows(app):
        expected = score(dict(zip(METRICS, row[3:8], strict=True)), new)
        assert row.score == expected.total and row.profile_version == 2
        assert list(row[8:]) == [expected.points[m] for m in METRICS]
    # Each submission keeps the score it had: explainable under the version that gave it.
    for row in stored_rows(app):
        before = score(dict(zip(METRICS, row[3:8], strict=True)), Profile()).total
        earlier = client.get(f"/submissions/{row.id}").get_json()["earlier_scores"]
        assert earlier == [{"profile_version": 1, "score": number(before)}]
    # New submissions use it; the old version stays stored.
    created = submit_as(client, alice, address="10.0.0.9").get_json()
    assert client.get(f"/submissions/{created['submission_id']}").get_json()["profile_version"] == 2
    with get_db(app).connect() as connection:
        versions = connection.execute(
            text("SELECT version, parameters FROM scoring_profiles ORDER BY version")
        )
        stored = [(v, parse(p)) for v, p in versions]
    assert stored == [(1, Profile()), (2, new)]


def test_the_same_profile_again_changes_nothing(app, client):
    admin = make_admin(app)
    submit_as(client)
    client.put("/admin/scoring", json=NEW_PROFILE, headers=bearer(admin))
    again = client.put("/admin/scoring", json=NEW_PROFILE, headers=bearer(admin)).get_json()
    assert again["changed"] is False and again["version"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NEW_PROFILE, "weights": {**NEW_WEIGHTS, "accuracy": 0.3}}, "weights"),  # sums to 1.1
        (
            {**NEW_PROFILE, "weights": {**NEW_WEIGHTS, "accuracy": 0.19999, "memory_usage": 0.10001}},
            "weights",
        ),
        (
            {**NEW_PROFILE, "weights": {**NEW_WEIGHTS, "accuracy": -0.2, "gpu_utilization": 0.8}},
            "weights.accuracy",
        ),
        (
            {**NEW_PROFILE, "weights": {k: v for k, v in NEW_WEIGHTS.items() if k != "accuracy"}},
            "weights.accuracy",
        ),
        ({**NEW_PROFILE, "time_best": 120, "time_worst": 10}, "time_worst"),
        ({**NEW_PROFILE, "time_best": "0"}, "time_best"),
        ({**NEW_PROFILE, "extra": 1}, "extra"),
    ],
)
def test_bad_profiles_are_refused_and_change_nothing(app, client, body, field):
    admin = make_admin(app)
    submit_as(client)
    before = snapshot(app)
    response = client.put("/admin/scoring", json=body, headers=bearer(admin))
    assert response.status_code == 422
    assert field in [e["field"] for e in response.get_json()["errors"]]
    assert snapshot(app) == before


weights = st.lists(st.integers(min_value=0, max_value=10_000), min_size=4, max_size=4).filter(
    lambda w: sum(w) <= 10_000
)
bounds = st.tuples(
    st.decimals(min_value=0, max_value=500, places=4),
    st.decimals(min_value=Decimal("0.0001"), max_value=5000, places=4),
)


@given(rows=st.lists(metric_sets, min_size=1, max_size=8), parts=weights, window=bounds)
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_rescored_scores_equal_the_scoring_module_on_both_databases(make_app, rows, parts, window):
    app = make_app(ratelimit_enabled=False)
    truncate(app)  # hypothesis runs many examples in one test
    client = app.test_client()
    admin = make_admin(app)
    for metrics in rows:
        assert (
            client.post(
                "/submit_qualification",
                data=json.dumps({k: float(v) for k, v in metrics.items()}),
                content_type="application/json",
            ).status_code
            == 201
        )
    fractions = [Decimal(p) / 10_000 for p in parts]
    weights_ = dict(zip(METRICS, [*fractions, 1 - sum(fractions)], strict=True))
    best, worst = window[0], window[0] + window[1]
    body = {
        "weights": {m: float(w) for m, w in weights_.items()},
        "time_best": float(best),
        "time_worst": float(worst),
    }
    assert client.put("/admin/scoring", json=body, headers=bearer(admin)).status_code == 200
    profile = Profile(
        weights=weights_, time_best=Decimal(str(float(best))), time_worst=Decimal(str(float(worst)))
    )
    for row in stored_rows(app):
        assert row.score == score(dict(zip(METRICS, row[3:8], strict=True)), profile).total
    get_db(app).engine.dispose()


# Export.


def test_the_export_has_every_submission_with_its_status_in_both_formats(app, client):
    admin = make_admin(app)
    alice = register(client, "alice")
    keep = submit_as(client, alice, accuracy=90).get_json()["submission_id"]
    lower = submit_as(client, alice, accuracy=10).get_json()["submission_id"]
    gone = submit_as(client, None, accuracy=100, address="10.0.0.2").get_json()["submission_id"]
    client.post(f"/admin/submissions/{gone}/disqualify", json={"reason": "bot"}, headers=bearer(admin))

    response = client.get("/admin/export?format=csv", headers=bearer(admin))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    records = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [int(r["submission_id"]) for r in records] == [keep, lower, gone]
    assert [(r["rank_all"], r["rank_best"]) for r in records] == [("1", "1"), ("2", ""), ("", "")]
    assert [r["status"] for r in records] == ["active", "active", "disqualified"]
    assert records[2]["disqualify_reason"] == "bot"
    assert records[0]["participant"] == "alice" and records[0]["profile_version"] == "1"
    assert Decimal(records[0]["score"]) == Decimal(
        str(client.get(f"/submissions/{keep}").get_json()["score"])
    )
    assert records[0]["completion_time"] == "30.0000"

    document = client.get("/admin/export?format=json", headers=bearer(admin)).get_json()
    assert document["active_profile_version"] == 1
    assert [r["submission_id"] for r in document["submissions"]] == [keep, lower, gone]
    assert document["submissions"][2]["status"] == "disqualified"
    assert client.get("/admin/export?format=xml", headers=bearer(admin)).status_code == 400
