"""The services without HTTP: submitting, changing the scoring profile and settling the slot
pool, called with plain values as the handlers and the CLI call them (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from gpuq import audit, participants
from gpuq.app import runtime_of
from gpuq.errors import Forbidden, RateLimited
from gpuq.scoring import METRICS, Profile
from gpuq.store.models import Submission
from gpuq.submissions import idempotency
from gpuq.submissions.store import STATUS_DISQUALIFIED
from tests.conftest import WORKED_EXAMPLE, FrozenClock

ANYWHERE = "10.1.2.3"


def metrics(**changes: int) -> dict[str, Decimal]:
    return {name: Decimal(str({**WORKED_EXAMPLE, **changes}[name])) for name in METRICS}


def stored(runtime) -> int:
    with runtime.database.autocommit() as connection:
        return connection.scalar(select(func.count()).select_from(Submission)) or 0


def test_submitting_scores_stores_ranks_and_answers_once(make_app):
    runtime = runtime_of(make_app())
    service = runtime.submissions
    first = json.loads(service.submit(metrics(), ANYWHERE, None).body)
    assert (first["success"], first["score"], first["rank"], first["participant"]) == (True, 87.95, 1, None)
    assert first["breakdown"]["accuracy"] == {"value": 98, "points": 14.7, "weight": 15}
    better = json.loads(service.submit(metrics(accuracy=100), ANYWHERE, None).body)
    assert better["rank"] == 1 and better["score"] == 88.25
    assert [e.submission_id for e in runtime.board.page(0, 10).entries] == [
        better["submission_id"],
        first["submission_id"],
    ]
    detail = service.detail(first["submission_id"])
    assert (detail["rank"], detail["status"], detail["profile_version"]) == (2, "active", 1)


def test_an_idempotent_submission_is_stored_once_and_replayed_byte_for_byte(make_app):
    runtime = runtime_of(make_app())
    service = runtime.submissions
    body = {**WORKED_EXAMPLE}
    key = ("retry-1", idempotency.fingerprint(body))
    first = service.submit(metrics(), ANYWHERE, None, key)
    again = service.find_replay(ANYWHERE, *key)
    assert again is not None and again.replayed and not first.replayed
    assert again.body == first.body and again.submission_id == first.submission_id
    assert stored(runtime) == 1


def test_a_participant_submits_within_their_quota_and_not_once_disqualified(make_app):
    runtime = runtime_of(make_app(participant_limit="2 per hour", submit_limit="100 per hour"))
    member, _key = runtime.participants.create("alice", is_admin=False, actor=None)
    heard = []
    for attempt in range(2):
        receipt = runtime.submissions.submit(metrics(), f"10.0.0.{attempt}", member, on_usage=heard.append)
        assert json.loads(receipt.body)["participant"] == "alice"
    # The tighter quota (the participant's 2 per hour, not the address's 100) is reported.
    assert [(usage.limit, usage.remaining) for usage in heard] == [(2, 1), (2, 0)]
    with pytest.raises(RateLimited):
        runtime.submissions.submit(metrics(), "10.0.0.9", member, on_usage=heard.append)
    assert len(heard) == 2  # a refused submission takes nothing, so reports nothing
    runtime.moderation.participant(member, True, "typed the numbers", actor="root")
    with runtime.database.autocommit() as connection:
        banned = participants.get(connection, "alice")
    with pytest.raises(Forbidden):
        runtime.submissions.submit(metrics(), "10.0.0.8", banned)
    assert stored(runtime) == 2


def test_changing_the_profile_rescores_everything_audited_and_a_dry_run_changes_nothing(make_app):
    runtime = runtime_of(make_app())
    submitted = json.loads(runtime.submissions.submit(metrics(), ANYWHERE, None).body)
    only_accuracy = Profile(weights={m: Decimal(1 if m == "accuracy" else 0) for m in METRICS})

    trial = runtime.scoring.change(only_accuracy, dry_run=True, actor="root", reason=None)
    assert trial.changed and trial.version is None and trial.outcome is not None
    leaders = [(e["score"], e["previous_score"]) for e in trial.outcome.leaders]
    assert leaders == [(Decimal(98), Decimal("87.95"))]
    assert runtime.submissions.detail(submitted["submission_id"])["score"] == 87.95

    report = runtime.scoring.change(only_accuracy, dry_run=False, actor="root", reason="accuracy only")
    assert (report.previous_version, report.version) == (1, 2)
    detail = runtime.submissions.detail(submitted["submission_id"])
    assert detail["score"] == 98 and detail["profile_version"] == 2
    assert detail["earlier_scores"] == [{"profile_version": 1, "score": 87.95}]
    with runtime.database.autocommit() as connection:
        events, _total = audit.page(connection, 0, 10)
    assert [(e["action"], e["actor"], e["reason"]) for e in events] == [
        ("scoring.change", "root", "accuracy only")
    ]
    # The service forgot its copy of the profile: the next submission is scored with version 2.
    later = json.loads(runtime.submissions.submit(metrics(accuracy=50), ANYWHERE, None).body)
    assert later["score"] == 50 and runtime.submissions.detail(later["submission_id"])["profile_version"] == 2
    assert runtime.scoring.change(only_accuracy, dry_run=False, actor="root", reason=None).changed is False


def test_settling_grants_the_free_slot_to_the_best_then_passes_it_on_at_expiry(make_app):
    clock = FrozenClock()
    runtime = runtime_of(make_app(clock=clock, slot_hours=1, slot_sweep_seconds=0))
    events = runtime.bus.subscribe()
    best, _ = runtime.participants.create("best", is_admin=False, actor=None)
    second, _ = runtime.participants.create("second", is_admin=False, actor=None)
    # A submission that leads settles the pool itself (without expiring anything).
    runtime.submissions.submit(metrics(accuracy=99), "10.0.0.1", best)
    runtime.submissions.submit(metrics(accuracy=90), "10.0.0.2", second)
    assert [(s["name"], s["state"], s["holder"]) for s in runtime.slots.pool()] == [("gpu-0", "held", "best")]
    assert runtime.slots.settle() == []  # nothing expired, no free slot

    clock.advance(3600)
    changes = runtime.slots.settle()
    assert [(c.action, c.slot, c.participant) for c in changes] == [
        ("expiry", "gpu-0", "best"),
        ("grant", "gpu-0", "second"),
    ]
    assert runtime.slots.settle() == []  # settled: a second run changes nothing
    published = []
    while True:
        event = events.get(timeout=0)
        if event.type == "slot":
            published.append((event.data["action"], event.data["participant"]))
        if published[-1:] == [("grant", "second")]:
            break
    assert published == [("grant", "best"), ("expiry", "best"), ("grant", "second")]
    overview = runtime.slots.overview(best)
    assert overview["me"]["reason"] == "cooling down after a lease"


def test_a_disqualified_submission_leaves_both_views_through_the_moderation_service(make_app):
    runtime = runtime_of(make_app())
    receipt = json.loads(runtime.submissions.submit(metrics(), ANYWHERE, None).body)
    decision = runtime.moderation.submission(receipt["submission_id"], True, "bogus", actor="root")
    assert decision.action == "submission.disqualify" and decision.after["disqualified"] is True
    assert runtime.board.page(0, 10, "all").total == 0 and runtime.board.page(0, 10, "best").total == 0
    assert runtime.submissions.detail(receipt["submission_id"])["status"] == STATUS_DISQUALIFIED
