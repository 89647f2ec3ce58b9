"""Measured results through the API (both backends): a run ticket, the evidence of the run,
the metrics the server derives, the checks (each rule broken alone gets exactly its code),
the refusals, and the provenance and flags of every result."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from gpuq.app import runtime_of
from gpuq.scoring import score
from tests.conftest import WORKED_EXAMPLE, FrozenClock, bearer, make_admin, register, stored_count, submit_as
from tests.measured import evidence_for


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def api(make_app, clock):
    return make_app(clock=clock).test_client()


def ticket_for(api: Any, key: str) -> dict[str, Any]:
    response = api.post("/runs", headers=bearer(key))
    assert response.status_code == 201, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def send(api: Any, key: str, ticket: dict[str, Any], body: dict[str, Any], **headers: str) -> Any:
    return api.post(ticket["evidence_url"], json=body, headers={**bearer(key), **headers})


def test_the_server_derives_the_metrics_scores_and_ranks_a_measured_run(api, clock):
    key = register(api, "measurer")
    ticket = ticket_for(api, key)
    clock.advance(21)  # the run took 20 s
    answer = send(api, key, ticket, evidence_for(ticket))
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["metrics"] == {
        "gpu_utilization": 80.0,  # the mean of the samples
        "memory_usage": 75.0,  # 60 of 80 GiB at the peak
        "power_efficiency": 80.0,  # 0.8 busy x 700 W limit x 20 s / 14,000 J
        "completion_time": 20.0,
        "accuracy": 97.5,
    }
    profile, _version = runtime_of(api.application).profiles.get()
    expected = score({name: Decimal(str(value)) for name, value in body["metrics"].items()}, profile).total
    assert Decimal(str(body["score"])) == expected
    assert (body["provenance"], body["ranked"], body["rank"], body["withheld"]) == ("measured", True, 1, None)
    assert body["gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert all(check["passed"] for check in body["checks"])
    shown = api.get(f"/submissions/{body['submission_id']}").get_json()
    assert shown["provenance"] == "measured" and shown["checks"] == body["checks"]
    first = api.get("/leaderboard").get_json()["leaderboard"][0]
    assert (first["submission_id"], first["provenance"]) == (body["submission_id"], "measured")


def _shift(body: dict[str, Any], field: str, seconds: float) -> None:
    moment = dt.datetime.fromisoformat(body["run"][field].replace("Z", "+00:00"))
    body["run"][field] = (moment + dt.timedelta(seconds=seconds)).isoformat()


def _swap_times(body: dict[str, Any]) -> None:
    t = body["samples"]["t"]
    t[5], t[6] = t[6], t[5]


def _drop_tail(body: dict[str, Any]) -> None:
    for column in body["samples"].values():
        del column[-20:]


def _halve_energy(body: dict[str, Any]) -> None:
    energy = body["samples"]["energy_j"]
    body["samples"]["energy_j"] = [energy[0] + (value - energy[0]) / 2 for value in energy]


def _no_energy(body: dict[str, Any]) -> None:
    """No power drawn and a counter that does not move: an edit worth 25 points if unchecked."""
    body["samples"]["power_w"] = [None] * len(body["samples"]["power_w"])
    body["samples"]["energy_j"] = [body["samples"]["energy_j"][0]] * len(body["samples"]["energy_j"])


def _over_total(body: dict[str, Any]) -> None:
    body["samples"]["mem_used_bytes"][3] = body["gpu"]["memory_total_bytes"] + 1


def _swap_gpu(body: dict[str, Any]) -> None:
    body["samples"]["uuid"][100:] = ["GPU-99999999-0000-0000-0000-000000000000"] * len(
        body["samples"]["uuid"][100:]
    )


BREAKS = {
    "run_failed": (21, lambda body: body["run"].update(exit_status=1)),
    "test_backend": (21, lambda body: body.update(backend="fake")),
    "run_outside_ticket": (21, lambda body: body["run"].update(since_ticket_seconds=-120)),
    "duration_exceeds_ticket": (10, lambda body: None),  # evidence of a 20 s run 10 s after the ticket
    "duration_mismatch": (21, lambda body: _shift(body, "ended_at", 5)),
    "samples_not_monotone": (21, _swap_times),
    "sample_count": (21, lambda body: body.update(rate_hz=20)),
    "samples_do_not_cover_run": (21, _drop_tail),
    "energy_mismatch": (21, _halve_energy),
    "energy_implausible": (21, _no_energy),
    "memory_over_total": (21, _over_total),
    "gpu_changed": (21, _swap_gpu),
}


@pytest.mark.parametrize("code", list(BREAKS))
def test_evidence_that_breaks_one_rule_is_stored_unranked_with_exactly_that_code(api, clock, code):
    key = register(api, "breaker")
    ticket = ticket_for(api, key)
    wait, breaking = BREAKS[code]
    clock.advance(wait)
    body = evidence_for(ticket)
    breaking(body)
    answer = send(api, key, ticket, body)
    assert answer.status_code == 201, answer.get_json()
    result = answer.get_json()
    assert [check["code"] for check in result["checks"] if not check["passed"]] == [code]
    assert (result["ranked"], result["rank"], result["withheld"]) == (False, None, "evidence")
    assert api.get("/leaderboard?view=all").get_json()["total"] == 0
    assert api.get(f"/submissions/{result['submission_id']}").get_json()["ranked"] is False


def _refused(answer: Any, status: int, code: str) -> None:
    assert answer.status_code == status, answer.get_json()
    assert answer.content_type == "application/problem+json"
    assert answer.get_json()["code"] == code


def test_tickets_are_single_use_personal_and_expire(api, clock):
    owner, thief = register(api, "owner"), register(api, "thief")
    ticket = ticket_for(api, owner)
    clock.advance(21)
    body = evidence_for(ticket)
    _refused(send(api, thief, ticket, body), 403, "ticket_not_yours")
    wrong = {**body, "nonce": "0" * 32}
    _refused(send(api, owner, ticket, wrong), 422, "ticket_nonce_mismatch")
    unknown = {**ticket, "evidence_url": "/runs/" + "0" * 32 + "/evidence"}
    _refused(send(api, owner, unknown, body), 404, "ticket_unknown")
    assert stored_count(api.application) == 0  # refusals leave nothing behind
    assert send(api, owner, ticket, body).status_code == 201
    again = evidence_for(ticket, util=90.0)
    _refused(send(api, owner, ticket, again), 409, "ticket_used")

    late = ticket_for(api, owner)
    clock.advance(61 * 60)
    _refused(send(api, owner, late, evidence_for(late)), 410, "ticket_expired")
    assert stored_count(api.application) == 1


def test_the_same_measurements_are_never_accepted_twice(api, clock):
    key = register(api, "replayer")
    first = ticket_for(api, key)
    clock.advance(21)
    body = evidence_for(first)
    assert send(api, key, first, body).status_code == 201
    second = ticket_for(api, key)
    _refused(send(api, key, second, {**body, "nonce": second["nonce"]}), 409, "evidence_replayed")
    assert stored_count(api.application) == 1


def test_a_run_without_a_measured_accuracy_is_refused(api, clock):
    key = register(api, "silent")
    ticket = ticket_for(api, key)
    clock.advance(21)
    _refused(send(api, key, ticket, evidence_for(ticket, accuracy=None)), 422, "measurement_missing")
    assert stored_count(api.application) == 0


def test_a_retried_evidence_post_replays_the_first_answer(api, clock):
    key = register(api, "retrier")
    ticket = ticket_for(api, key)
    clock.advance(21)
    body = evidence_for(ticket)
    first = send(api, key, ticket, body, **{"Idempotency-Key": "run-1"})
    again = send(api, key, ticket, body, **{"Idempotency-Key": "run-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    assert stored_count(api.application) == 1


def test_tickets_and_evidence_need_a_key(api):
    assert api.post("/runs").status_code == 401
    assert api.post("/runs/abc/evidence", json={}).status_code == 401


def test_malformed_evidence_is_a_422_naming_the_field(api, clock):
    key = register(api, "sloppy")
    ticket = ticket_for(api, key)
    body = evidence_for(ticket)
    body["samples"]["power_w"].pop()
    answer = send(api, key, ticket, body)
    assert answer.status_code == 422
    assert "samples" in answer.get_json()["detail"]
    assert stored_count(api.application) == 0


def test_the_specifications_submission_is_self_reported_and_unchanged(client):
    answer = submit_as(client)
    body = answer.get_json()
    assert answer.status_code == 201 and body["score"] == 87.95
    assert (body["provenance"], body["flags"], body["ranked"]) == ("self-reported", [], True)
    assert "checks" not in body
    assert client.get(f"/submissions/{body['submission_id']}").get_json()["checks"] is None


@pytest.mark.parametrize(
    ("metrics", "codes"),
    [
        (
            {
                "gpu_utilization": 100,
                "memory_usage": 100,
                "power_efficiency": 100,
                "accuracy": 100,
                "completion_time": 0.0001,
            },
            ["all_maximum", "time_below_minimum"],
        ),
        (
            {"gpu_utilization": 0.9, "memory_usage": 0.85, "power_efficiency": 0.95, "accuracy": 0.98},
            ["looks_like_fractions"],
        ),
        ({"completion_time": 30000}, ["looks_like_milliseconds"]),
    ],
)
def test_suspicious_self_reported_numbers_are_flagged_not_refused(client, metrics, codes):
    answer = submit_as(client, **metrics)
    assert answer.status_code == 201
    body = answer.get_json()
    assert [flag["code"] for flag in body["flags"]] == codes
    assert all(flag["detail"] for flag in body["flags"])
    assert [
        flag["code"] for flag in client.get(f"/submissions/{body['submission_id']}").get_json()["flags"]
    ] == codes
    assert WORKED_EXAMPLE  # the worked example itself raises none (test above)


PERFECT = {
    "gpu_utilization": 100,
    "memory_usage": 100,
    "power_efficiency": 100,
    "completion_time": 0.0001,
    "accuracy": 100,
}


def test_a_flag_the_policy_holds_keeps_a_result_off_the_board_until_an_admin_accepts_it(make_app):
    app = make_app(hold_flags="all_maximum")
    api = app.test_client()
    admin = make_admin(app)
    held = submit_as(api, **PERFECT).get_json()
    assert (held["ranked"], held["withheld"], held["rank"]) == (False, "review", None)
    assert api.get("/leaderboard").get_json()["total"] == 0
    accepted = api.post(
        f"/admin/submissions/{held['submission_id']}/accept",
        json={"reason": "checked"},
        headers=bearer(admin),
    )
    assert accepted.status_code == 200, accepted.get_json()
    assert accepted.get_json()["after"]["withheld"] is None and accepted.get_json()["after"]["ranked"] is True
    assert api.get("/leaderboard").get_json()["leaderboard"][0]["submission_id"] == held["submission_id"]
    again = api.post(
        f"/admin/submissions/{held['submission_id']}/accept", json={"reason": "twice"}, headers=bearer(admin)
    )
    assert again.status_code == 409
    assert submit_as(api).get_json()["withheld"] is None  # an unflagged result is ranked at once


def test_admins_change_the_results_policy_for_what_comes_next(make_app):
    app = make_app()
    api = app.test_client()
    admin = make_admin(app)
    before = submit_as(api).get_json()
    assert api.get("/admin/results/policy", headers=bearer(admin)).get_json() == {
        "self_reported_ranked": True,
        "hold_flags": [],
    }
    bad = api.put("/admin/results/policy", json={"hold_flags": ["made_up"]}, headers=bearer(admin))
    assert bad.status_code == 422
    changed = api.put("/admin/results/policy", json={"self_reported_ranked": False}, headers=bearer(admin))
    assert changed.get_json() == {"self_reported_ranked": False, "hold_flags": []}
    after = submit_as(api, address="10.0.0.2").get_json()
    assert (after["ranked"], after["withheld"]) == (False, "policy")
    assert api.get(f"/submissions/{before['submission_id']}").get_json()["ranked"] is True  # kept
    audit = api.get("/admin/audit", headers=bearer(admin)).get_json()
    assert any(event["action"] == "results.policy" for event in audit["events"])


@pytest.mark.parametrize("measured_only", [False, True])
def test_a_slot_line_for_measured_results_passes_over_typed_numbers(make_app, clock, measured_only):
    app = make_app(clock=clock, slots="gpu-0", slots_measured_only=measured_only)
    api = app.test_client()
    typist, measurer = register(api, "typist"), register(api, "measurer")
    assert submit_as(api, typist, **PERFECT).status_code == 201
    ticket = ticket_for(api, measurer)
    clock.advance(21)
    assert send(api, measurer, ticket, evidence_for(ticket)).status_code == 201
    runtime_of(app).slots.settle()
    holder = api.get("/slots").get_json()["slots"][0]["holder"]
    assert holder == ("measurer" if measured_only else "typist")
    assert api.get("/slots").get_json()["policy"]["measured_only"] is measured_only


def test_a_slot_tied_to_a_gpu_model_goes_to_the_best_result_on_that_model(make_app, clock):
    app = make_app(clock=clock, slots="gpu-0,h100-0", qualifying_score=100)  # nobody qualifies yet
    api = app.test_client()
    admin = make_admin(app)
    h100, a100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"
    tied = api.put(
        "/admin/slots/h100-0/gpu-model", json={"gpu_model": "NVIDIA  H100 80GB HBM3"}, headers=bearer(admin)
    )
    assert tied.status_code == 200, tied.get_json()
    assert [(s["name"], s["gpu_model"]) for s in tied.get_json()["slots"]] == [
        ("gpu-0", None),
        ("h100-0", h100),
    ]
    runs = [("bob", h100, 95.0), ("alice", a100, 90.0), ("carol", h100, 85.0)]  # best first
    keys = {name: register(api, name) for name, _model, _util in runs}
    tickets = [ticket_for(api, keys[name]) for name, _model, _util in runs]
    clock.advance(21)
    for (name, model, util), ticket in zip(runs, tickets, strict=True):
        body = evidence_for(ticket, util=util)
        body["gpu"]["name"] = model
        assert send(api, keys[name], ticket, body).status_code == 201
    assert api.get("/slots", headers=bearer(keys["carol"])).get_json()["me"]["gpu_models"] == []

    # Both slots come free for the line at once: the model's slot is filled first, so the
    # best H100 result takes it and the slot anybody could use goes to the next.
    lowered = api.put("/admin/slots/policy", json={"qualifying_score": 50}, headers=bearer(admin))
    assert lowered.status_code == 200
    slots = api.get("/slots", headers=bearer(keys["carol"])).get_json()
    assert [(s["name"], s["holder"]) for s in slots["slots"]] == [("gpu-0", "alice"), ("h100-0", "bob")]
    assert (slots["me"]["position"], slots["me"]["gpu_models"]) == (1, [{"gpu_model": h100, "position": 1}])
    assert slots["model_lines"] == [
        {
            "gpu_model": h100,
            "in_line": [{"position": 1, "participant": "carol", "score": slots["in_line"][0]["score"]}],
        }
    ]
    released = api.post("/slots/h100-0/release", headers=bearer(keys["bob"]))
    assert released.status_code == 200
    pool = api.get("/slots").get_json()["slots"]
    assert [(s["name"], s["holder"]) for s in pool] == [("gpu-0", "alice"), ("h100-0", "carol")]

    untied = api.put("/admin/slots/h100-0/gpu-model", json={"gpu_model": None}, headers=bearer(admin))
    assert untied.get_json()["slots"][1]["gpu_model"] is None
    assert api.get("/slots").get_json()["model_lines"] == []
    for path, body, status in [
        ("/admin/slots/nope/gpu-model", {"gpu_model": h100}, 404),
        ("/admin/slots/h100-0/gpu-model", {"gpu_model": " "}, 422),
        ("/admin/slots/h100-0/gpu-model", {}, 422),
    ]:
        answer = api.put(path, json=body, headers=bearer(admin))
        assert answer.status_code == status and answer.mimetype == "application/problem+json"
    assert api.put("/admin/slots/h100-0/gpu-model", json={"gpu_model": h100}).status_code == 401
    added = api.post("/admin/slots", json={"name": "a100-0", "gpu_model": a100}, headers=bearer(admin))
    assert added.get_json()["slots"][0] == {
        **added.get_json()["slots"][0],
        "name": "a100-0",
        "gpu_model": a100,
    }


def test_each_gpu_model_has_a_board_of_its_measured_results(api, clock):
    alice, bob = register(api, "alice"), register(api, "bob")
    submit_as(api, alice)  # self-reported: on no GPU's board
    runs = [
        (alice, "NVIDIA H100 80GB HBM3", 80.0),
        (alice, "NVIDIA H100 80GB HBM3", 90.0),
        (bob, "NVIDIA H100 80GB HBM3", 85.0),
        (bob, "NVIDIA A100-SXM4-40GB", 70.0),
    ]
    tickets = [ticket_for(api, key) for key, _model, _util in runs]
    clock.advance(21)
    ids = []
    for (key, model, util), ticket in zip(runs, tickets, strict=True):
        body = evidence_for(ticket, util=util)
        body["gpu"]["name"] = model
        answer = send(api, key, ticket, body)
        assert answer.status_code == 201, answer.get_json()
        ids.append(answer.get_json()["submission_id"])
    assert api.get("/gpus").get_json() == {
        "gpus": [
            {"model": "NVIDIA H100 80GB HBM3", "results": 3, "measured": 3, "participants": 2},
            {"model": "NVIDIA A100-SXM4-40GB", "results": 1, "measured": 1, "participants": 1},
        ]
    }
    h100 = api.get("/leaderboard", query_string={"gpu": "NVIDIA H100 80GB HBM3"}).get_json()
    assert [(row["participant"], row["submission_id"]) for row in h100["leaderboard"]] == [
        ("alice", ids[1]),
        ("bob", ids[2]),
    ]
    assert (h100["gpu"], h100["total"], h100["view"]) == ("NVIDIA H100 80GB HBM3", 2, "best")
    every = api.get("/leaderboard", query_string={"gpu": "NVIDIA H100 80GB HBM3", "view": "all"}).get_json()
    assert [row["submission_id"] for row in every["leaderboard"]] == [ids[1], ids[2], ids[0]]
    a100 = api.get("/leaderboard", query_string={"gpu": "NVIDIA A100-SXM4-40GB"}).get_json()
    assert [row["participant"] for row in a100["leaderboard"]] == ["bob"]
    assert api.get("/leaderboard?gpu=Nobody%27s%20GPU").get_json()["total"] == 0
    assert api.get("/leaderboard", query_string={"gpu": "x" * 129}).status_code == 400


def test_a_run_far_faster_than_its_gpus_others_is_flagged(make_app, clock):
    api = make_app(clock=clock, participant_limit="100 per hour").test_client()
    key = register(api, "steady")
    tickets = [ticket_for(api, key) for _ in range(11)]
    clock.advance(21)
    answers = [
        send(api, key, ticket, evidence_for(ticket, util=70.0 + i)).get_json()
        for i, ticket in enumerate(tickets[:10])
    ]
    assert all(answer["flags"] == [] for answer in answers)
    fast = evidence_for(tickets[10], seconds=5.0)
    flagged = send(api, key, tickets[10], fast).get_json()
    assert [flag["code"] for flag in flagged["flags"]] == ["outlier_for_gpu"]
    assert flagged["ranked"] is True  # a flag alone never withholds a result


def test_the_export_shows_provenance_gpu_flags_and_why_a_result_is_withheld(make_app, clock):
    import csv
    import io

    app = make_app(clock=clock)
    api = app.test_client()
    admin, key = make_admin(app), register(api, "exported")
    ticket = ticket_for(api, key)
    clock.advance(21)
    failing = evidence_for(ticket)
    failing["run"]["exit_status"] = 1
    measured = send(api, key, ticket, failing).get_json()["submission_id"]
    typed = submit_as(api, **PERFECT).get_json()["submission_id"]
    text = api.get("/admin/export?format=csv", headers=bearer(admin)).get_data(as_text=True)
    records = {int(r["submission_id"]): r for r in csv.DictReader(io.StringIO(text))}
    assert (records[measured]["provenance"], records[measured]["withheld"]) == ("measured", "evidence")
    assert records[measured]["gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert (records[typed]["provenance"], records[typed]["flags"]) == (
        "self-reported",
        "all_maximum time_below_minimum",
    )


def test_an_evidence_post_counts_once_against_the_daily_limit_and_a_replay_not_at_all(api, clock):
    key = register(api, "counted")
    ticket = ticket_for(api, key)
    clock.advance(21)
    before = api.get("/quota", headers=bearer(key)).get_json()["limits"][0]["remaining"]
    body = evidence_for(ticket)
    first = send(api, key, ticket, body, **{"Idempotency-Key": "once"})
    assert first.status_code == 201
    send(api, key, ticket, body, **{"Idempotency-Key": "once"})
    after = api.get("/quota", headers=bearer(key)).get_json()["limits"][0]["remaining"]
    assert before - after == 1


def test_measurements_written_differently_are_still_the_same_evidence(api, clock):
    key = register(api, "rewriter")
    first, second = ticket_for(api, key), ticket_for(api, key)
    clock.advance(21)
    body = evidence_for(first)
    assert send(api, key, first, body).status_code == 201
    again = {**body, "nonce": second["nonce"]}
    again["samples"] = {**body["samples"], "power_w": [int(watts) for watts in body["samples"]["power_w"]]}
    _refused(send(api, key, second, again), 409, "evidence_replayed")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_times_beyond_any_run_are_a_422_not_a_500(api, clock, moment):
    key = register(api, "timeless")
    ticket = ticket_for(api, key)
    clock.advance(21)
    body = evidence_for(ticket)
    body["run"]["started_at"] = moment
    answer = send(api, key, ticket, body)
    assert answer.status_code == 422 and "run.started_at" in answer.get_json()["detail"]


def test_no_ticket_is_issued_while_the_evidence_would_be_refused_for_the_quota(make_app):
    api = make_app(participant_limit="1 per hour").test_client()
    key = register(api, "busy")
    assert submit_as(api, key).status_code == 201
    refused = api.post("/runs", headers=bearer(key))
    assert refused.status_code == 429 and "Retry-After" in refused.headers


def test_admins_read_a_measured_results_evidence_and_accept_one_its_checks_withheld(make_app, clock):
    app = make_app(clock=clock)
    api = app.test_client()
    admin, key = make_admin(app), register(api, "inspected")
    ticket = ticket_for(api, key)
    clock.advance(21)
    body = evidence_for(ticket)
    body["samples"]["uuid"][-1] = "GPU-other"
    stored = send(api, key, ticket, body).get_json()
    assert stored["withheld"] == "evidence"
    shown = api.get(f"/admin/submissions/{stored['submission_id']}/evidence", headers=bearer(admin))
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    evidence = shown.get_json()["evidence"]
    assert evidence["samples"]["uuid"][-1] == "GPU-other" and len(evidence["samples"]["t"]) == 201
    assert (
        api.get(f"/admin/submissions/{stored['submission_id']}/evidence", headers=bearer(key)).status_code
        == 403
    )
    typed = submit_as(api).get_json()["submission_id"]
    assert api.get(f"/admin/submissions/{typed}/evidence", headers=bearer(admin)).status_code == 404
    accepted = api.post(
        f"/admin/submissions/{stored['submission_id']}/accept",
        json={"reason": "a second GPU of the same model in one box"},
        headers=bearer(admin),
    )
    assert accepted.status_code == 200 and accepted.get_json()["after"]["ranked"] is True


def test_a_run_whose_energy_counter_covers_a_stored_runs_span_is_a_replay(api, clock):
    key = register(api, "replayer2")
    first, second = ticket_for(api, key), ticket_for(api, key)
    clock.advance(21)
    original = evidence_for(first)
    assert send(api, key, first, original).status_code == 201
    edited = evidence_for(second, util=95.0)  # other samples, so another digest...
    edited["samples"]["energy_j"] = original["samples"]["energy_j"]  # ...but the same counter span
    result = send(api, key, second, edited).get_json()
    assert [check["code"] for check in result["checks"] if not check["passed"]] == ["energy_reused"]
    assert result["ranked"] is False
    other_gpu = evidence_for(ticket_for(api, key))
    assert other_gpu["gpu"]["uuid"] == original["gpu"]["uuid"]  # a fresh span on the same GPU passes


def test_a_measured_result_that_is_not_the_lead_still_puts_its_owner_in_line_at_once(make_app, clock):
    app = make_app(clock=clock, slots="gpu-0", slots_measured_only=True)
    api = app.test_client()
    key = register(api, "both")
    assert submit_as(api, key, **PERFECT).get_json()["rank"] == 1  # the lead: self-reported
    ticket = ticket_for(api, key)
    clock.advance(21)
    body = evidence_for(ticket)
    body["gpu"]["name"] = "  NVIDIA   H100 80GB HBM3 "
    measured = send(api, key, ticket, body).get_json()
    assert measured["gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert api.get("/slots").get_json()["slots"][0]["holder"] == "both"  # no sweep needed


def test_admins_list_the_results_held_for_review(make_app):
    app = make_app(hold_flags="all_maximum")
    api = app.test_client()
    admin = make_admin(app)
    held = [submit_as(api, address=f"10.0.0.{i}", **PERFECT).get_json()["submission_id"] for i in (1, 2)]
    submit_as(api, address="10.0.0.3")  # ranked: not listed
    listed = api.get("/admin/submissions", headers=bearer(admin)).get_json()
    assert [row["submission_id"] for row in listed["submissions"]] == held[::-1]
    assert (listed["total"], listed["withheld"]) == (2, "review")
    assert listed["submissions"][0]["flags"][0]["code"] == "all_maximum"
    assert api.get("/admin/submissions?withheld=evidence", headers=bearer(admin)).get_json()["total"] == 0
    assert api.get("/admin/submissions?withheld=other", headers=bearer(admin)).status_code == 400


def test_tickets_that_expired_unused_are_purged_after_a_day(make_app, clock):
    from sqlalchemy import text

    from gpuq.store.db import get_db

    app = make_app(clock=clock)
    api = app.test_client()
    key = register(api, "forgetful")
    stale = ticket_for(api, key)
    clock.advance(2 * 86400)
    ticket_for(api, key)  # the hourly purge runs when a ticket is issued
    with get_db(app).engine.connect() as connection:
        ids = [row[0] for row in connection.execute(text("SELECT id FROM run_tickets"))]
    assert stale["ticket_id"] not in ids and len(ids) == 1


def test_a_self_reported_result_may_declare_its_gpu_and_is_marked_on_that_board(api, clock):
    key = register(api, "declarer")
    declared = submit_as(api, key, gpu_model="NVIDIA  H100 80GB HBM3").get_json()
    assert (declared["provenance"], declared["gpu_model"]) == ("self-reported", "NVIDIA H100 80GB HBM3")
    measurer = register(api, "measurer2")
    ticket = ticket_for(api, measurer)
    clock.advance(21)
    assert send(api, measurer, ticket, evidence_for(ticket)).status_code == 201
    board = api.get("/leaderboard", query_string={"gpu": "NVIDIA H100 80GB HBM3"}).get_json()["leaderboard"]
    assert [(row["participant"], row["provenance"]) for row in board] == [
        ("declarer", "self-reported"),
        ("measurer2", "measured"),
    ]
    assert api.get("/gpus").get_json()["gpus"] == [
        {"model": "NVIDIA H100 80GB HBM3", "results": 2, "measured": 1, "participants": 2}
    ]
    assert submit_as(api, key, gpu_model="   ").status_code == 422
