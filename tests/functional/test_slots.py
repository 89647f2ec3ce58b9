"""The slot pool with an injected clock: grants, expiry, cooldown, the claim window,
releases, the admin's pool changes, and the events the board consumes."""

from __future__ import annotations

import datetime as dt

import pytest

from gpuq.app import runtime_of
from tests.conftest import FrozenClock, bearer, make_admin, register, submit_as

HOUR = 3600


@pytest.fixture
def clock():
    return FrozenClock()


def sweep(app) -> list[str]:
    """What a worker's sweeper does once; returns the actions taken."""
    return [f"{c.action}:{c.slot}:{c.participant}" for c in runtime_of(app).slots.settle()]


def history(client):
    return client.get("/slots/history?limit=100").get_json()["leases"][::-1]  # oldest first


def pool(client, key=None):
    return client.get("/slots", headers=bearer(key) if key else {}).get_json()


def field(client):
    return [(s["name"], s["state"], s["holder"]) for s in pool(client)["slots"]]


def contenders(client, *scores):
    """Register one participant per accuracy (best first: p0 highest) and submit for each."""
    keys = []
    for i, accuracy in enumerate(scores):
        key = register(client, f"player{i}")
        assert submit_as(client, key, f"10.0.{i}.1", accuracy=accuracy).status_code == 201
        keys.append(key)
    return keys


def test_the_best_qualifier_gets_the_free_slot_at_once(make_app, clock):
    app = make_app(clock=clock, slot_hours=1)
    client = app.test_client()
    submit_as(client, None, "10.9.9.9", accuracy=100)  # anonymous: ranks first, never gets a slot
    keys = contenders(client, 90, 80)
    assert field(client) == [("gpu-0", "held", "player0")]
    slots = pool(client, keys[1])
    assert slots["slots"][0]["seconds_left"] == HOUR
    assert [(e["position"], e["participant"]) for e in slots["in_line"]] == [(1, "player1")]
    assert slots["me"]["eligible"] is True and slots["me"]["position"] == 1
    assert pool(client, keys[0])["me"]["reason"] == "holds slot gpu-0"


def test_expiry_hands_the_slot_to_the_next_exactly_once_and_cooldown_holds(make_app, clock):
    app = make_app(clock=clock, slot_hours=1)  # cooldown: one lease length
    client = app.test_client()
    keys = contenders(client, 90, 80)
    clock.advance(HOUR - 1)
    assert sweep(app) == []
    clock.advance(1)
    assert sweep(app) == ["expiry:gpu-0:player0", "grant:gpu-0:player1"]
    assert sweep(app) == []  # a second sweeper finds nothing left to do
    me = pool(client, keys[0])["me"]
    assert me["eligible"] is False and me["reason"] == "cooling down after a lease"
    clock.advance(HOUR)  # player1's lease ends as player0's cooldown does
    assert sweep(app) == ["expiry:gpu-0:player1", "grant:gpu-0:player0"]
    leases = history(client)
    assert [(lease["participant"], lease["end_reason"]) for lease in leases] == [
        ("player0", "expired"),
        ("player1", "expired"),
        ("player0", None),
    ]
    assert [lease["lease_id"] for lease in leases] == sorted(lease["lease_id"] for lease in leases)


def test_an_offer_waits_for_acceptance_and_passes_on_when_it_lapses(make_app, clock):
    app = make_app(clock=clock, slot_hours=1, slot_claim_minutes=10)
    client = app.test_client()
    keys = contenders(client, 90, 80, 70)
    assert field(client) == [("gpu-0", "offered", "player0")]
    # Someone else's slot looks like no slot at all, and nothing changes.
    assert client.post("/slots/gpu-0/accept", headers=bearer(keys[1])).status_code == 404
    assert client.post("/slots/gpu-0/release", headers=bearer(keys[1])).status_code == 404
    assert client.post("/slots/gpu-0/accept").status_code == 401
    accepted = client.post("/slots/gpu-0/accept", headers=bearer(keys[0]))
    assert accepted.status_code == 200 and accepted.get_json()["action"] == "accept"
    assert pool(client)["slots"][0]["seconds_left"] == HOUR  # the lease runs from acceptance
    assert client.post("/slots/gpu-0/accept", headers=bearer(keys[0])).status_code == 409

    released = client.post("/slots/gpu-0/release", headers=bearer(keys[0]))
    assert released.get_json()["action"] == "release"
    assert field(client) == [("gpu-0", "offered", "player1")]
    clock.advance(10 * 60)
    assert sweep(app) == ["decline:gpu-0:player1", "offer:gpu-0:player2"]
    assert sweep(app) == []
    assert pool(client, keys[1])["me"]["reason"] == "cooling down after a lease"
    assert [lease["end_reason"] for lease in history(client)] == ["released", "declined", None]


def test_the_qualifying_score_and_disqualification_decide_who_is_eligible(make_app, clock):
    app = make_app(clock=clock, qualifying_score=85)
    client = app.test_client()
    admin = make_admin(app)
    keys = contenders(client, 90, 50)  # player1 scores 81.05 + ... below 85
    low = pool(client, keys[1])["me"]
    assert low["eligible"] is False and "below the qualifying score 85" in low["reason"]
    assert pool(client)["in_line"] == []
    subscription = runtime_of(app).bus.subscribe()
    disqualified = client.post(
        "/admin/participants/player0/disqualify", json={"reason": "shared keys"}, headers=bearer(admin)
    )
    assert disqualified.status_code == 200
    assert field(client) == [("gpu-0", "free", None)]
    assert history(client)[0]["end_reason"] == "revoked"
    event = subscription.get(timeout=10)
    while event.type != "slot":
        event = subscription.get(timeout=10)
    assert (event.data["action"], event.data["participant"]) == ("revocation", "player0")
    assert pool(client, keys[0])["me"]["reason"] == "disqualified"
    changed = client.put("/admin/slots/policy", json={"qualifying_score": 50}, headers=bearer(admin))
    assert changed.get_json()["qualifying_score"] == 50
    assert field(client) == [("gpu-0", "held", "player1")]


def test_admins_shape_the_pool_and_every_change_is_audited(make_app, clock):
    app = make_app(clock=clock)
    client = app.test_client()
    admin = make_admin(app)
    keys = contenders(client, 90, 80, 70)
    added = client.post("/admin/slots", json={"name": "gpu-1"}, headers=bearer(admin))
    assert added.status_code == 200
    assert field(client) == [("gpu-0", "held", "player0"), ("gpu-1", "held", "player1")]
    assert client.post("/admin/slots", json={"name": "gpu-1"}, headers=bearer(admin)).status_code == 409
    assert client.delete("/admin/slots/gpu-1", headers=bearer(admin)).status_code == 409  # leased

    client.post("/admin/slots/gpu-1/drain", headers=bearer(admin))
    client.post("/slots/gpu-1/release", headers=bearer(keys[1]))
    assert field(client)[1] == ("gpu-1", "draining", None)  # no new lease on a draining slot
    client.post("/admin/slots/gpu-1/resume", headers=bearer(admin))
    assert field(client)[1] == ("gpu-1", "held", "player2")

    revoked = client.post("/admin/slots/gpu-0/revoke", json={"reason": "maintenance"}, headers=bearer(admin))
    assert revoked.status_code == 200
    assert field(client)[0] == ("gpu-0", "free", None)  # the only others are cooling down
    resized = client.put("/admin/slots/size", json={"size": 3}, headers=bearer(admin)).get_json()
    assert [s["name"] for s in resized["slots"]] == ["gpu-0", "gpu-1", "gpu-2"]
    shrunk = client.put("/admin/slots/size", json={"size": 1}, headers=bearer(admin)).get_json()
    assert [(s["name"], s["state"]) for s in shrunk["slots"]] == [("gpu-0", "free"), ("gpu-1", "draining")]
    assert client.delete("/admin/slots/gpu-0", headers=bearer(admin)).status_code == 200
    assert client.post("/admin/slots/nope/drain", headers=bearer(admin)).status_code == 404
    assert client.post("/admin/slots", json={"name": "bad name"}, headers=bearer(admin)).status_code == 422

    actions = [e["action"] for e in client.get("/admin/audit", headers=bearer(admin)).get_json()["events"]]
    assert (
        actions[:8]
        == [
            "slot.remove",
            "slot.resize",
            "slot.resize",
            "slot.revoke",
            "slot.resume",
            "slot.drain",
            "slot.add",
            "participant.create",
        ][: len(actions[:8])]
    )
    assert client.get("/admin/slots/policy", headers=bearer(admin)).get_json()["lease_hours"] == 24


def test_every_lease_change_is_published_for_the_board(make_app, clock):
    app = make_app(clock=clock, slot_hours=1)
    client = app.test_client()
    subscription = runtime_of(app).bus.subscribe()
    keys = contenders(client, 90, 80)
    client.post("/slots/gpu-0/release", headers=bearer(keys[0]))
    events = []
    while len(events) < 3:  # through Redis pub/sub on the postgres_redis backend: may take a moment
        event = subscription.get(timeout=10)
        if event.type == "slot":
            events.append(event.data)
    assert [(e["action"], e["participant"]) for e in events] == [
        ("grant", "player0"),
        ("release", "player0"),
        ("grant", "player1"),
    ]
    assert events[-1]["slots"][0]["holder"] == "player1"


def test_anonymous_submissions_rank_but_never_receive_a_slot(make_app, clock):
    app = make_app(clock=clock)
    client = app.test_client()
    submit_as(client, None, accuracy=100)
    assert field(client) == [("gpu-0", "free", None)]
    assert pool(client)["in_line"] == []
    assert "me" not in pool(client)


def test_the_readme_worked_example(make_app):
    clock = FrozenClock(dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC))
    app = make_app(clock=clock, qualifying_score=80)
    client = app.test_client()
    alice, bob, carol = register(client, "alice"), register(client, "bob"), register(client, "carol")
    assert submit_as(client, None, "10.0.0.9", accuracy=100, gpu_utilization=100).get_json()["score"] > 87.95
    assert submit_as(client, alice, "10.0.0.1").get_json()["score"] == 87.95
    assert submit_as(client, bob, "10.0.0.2", completion_time=48).get_json()["score"] == 84.95
    assert submit_as(client, carol, "10.0.0.3", accuracy=10, gpu_utilization=95).get_json()["score"] == 76
    assert field(client) == [("gpu-0", "held", "alice")]  # 1. the anonymous 90 ranks, never holds
    assert pool(client, bob)["me"]["position"] == 1  # 2.
    assert "below the qualifying score" in pool(client, carol)["me"]["reason"]
    clock.advance(24 * HOUR)  # 3. next day 09:00
    assert sweep(app) == ["expiry:gpu-0:alice", "grant:gpu-0:bob"]
    clock.advance(6 * HOUR)  # 4. Bob releases at 15:00: nobody eligible
    client.post("/slots/gpu-0/release", headers=bearer(bob))
    assert field(client) == [("gpu-0", "free", None)]
    clock.advance(18 * HOUR)  # the day after, 09:00: Alice's cooldown is over
    assert sweep(app) == ["grant:gpu-0:alice"]


def test_a_scoring_dry_run_shows_how_the_line_for_slots_would_change(make_app, clock):
    app = make_app(clock=clock)
    client = app.test_client()
    admin = make_admin(app)
    top, steady, quick = (register(client, name) for name in ("top", "steady", "quick"))
    submit_as(client, top, "10.0.0.1", gpu_utilization=100, completion_time=1)
    submit_as(client, steady, "10.0.0.2", gpu_utilization=100, completion_time=80)
    submit_as(client, quick, "10.0.0.3", gpu_utilization=40, completion_time=5)
    favour_speed = {
        "weights": {
            "gpu_utilization": 0.1,
            "memory_usage": 0.2,
            "power_efficiency": 0.2,
            "completion_time": 0.4,
            "accuracy": 0.1,
        },
        "time_best": 0,
        "time_worst": 90,
    }
    report = client.put("/admin/scoring?dry_run=true", json=favour_speed, headers=bearer(admin)).get_json()
    assert report["slot_line"] == {"before": ["steady", "quick"], "after": ["quick", "steady"]}
    assert [e["participant"] for e in pool(client)["in_line"]] == ["steady", "quick"]  # nothing changed
    applied = client.put("/admin/scoring", json=favour_speed, headers=bearer(admin)).get_json()
    assert applied["slot_line"]["after"] == ["quick", "steady"]
    assert [e["participant"] for e in pool(client)["in_line"]] == ["quick", "steady"]
    assert field(client) == [("gpu-0", "held", "top")]  # the holder keeps the lease


def test_a_declined_offer_goes_to_the_next_in_line(make_app):
    app = make_app(slots="gpu-0", slot_claim_minutes=5)
    api = app.test_client()
    first, second = register(api, "first"), register(api, "second")
    submit_as(api, first)
    submit_as(api, second, accuracy=90)
    runtime_of(app).slots.settle()
    assert api.get("/slots").get_json()["slots"][0]["holder"] == "first"
    assert api.post("/slots/gpu-0/decline", headers=bearer(second)).status_code == 404  # not theirs
    declined = api.post("/slots/gpu-0/decline", headers=bearer(first))
    assert declined.status_code == 200 and declined.get_json()["action"] == "decline"
    runtime_of(app).slots.settle()
    slot = api.get("/slots").get_json()["slots"][0]
    assert (slot["holder"], slot["lease_state"]) == ("second", "offered")
    history = api.get("/slots/history").get_json()["leases"]
    assert [lease["end_reason"] for lease in history if lease["participant"] == "first"] == ["declined"]
    assert api.post("/slots/gpu-0/accept", headers=bearer(second)).status_code == 200
    assert api.post("/slots/gpu-0/decline", headers=bearer(second)).status_code == 409  # held: release it
