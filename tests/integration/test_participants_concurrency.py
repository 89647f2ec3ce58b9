"""Races around participants on real PostgreSQL and Redis: one participant's submissions
from many threads in two app instances, and submissions while the profile changes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import select

from gpuq.app import runtime_of
from gpuq.leaderboard.query import DatabaseLeaderboard
from gpuq.scoring import METRICS, Profile, score
from gpuq.store.db import get_db
from gpuq.store.models import Submission
from tests.conftest import WORKED_EXAMPLE, bearer, make_admin, register

pytestmark = pytest.mark.parametrize("backend", ["postgres_redis"], indirect=True)
TABLE = Submission.__table__


def rows(app):
    columns = [
        TABLE.c.id,
        TABLE.c.score,
        TABLE.c.leads,
        TABLE.c.profile_version,
        *(TABLE.c[m] for m in METRICS),
    ]
    with get_db(app).connect() as connection:
        return connection.execute(select(*columns).order_by(TABLE.c.id)).all()


def test_one_participant_racing_itself_keeps_exactly_one_best_entry(make_app):
    apps = [make_app(ratelimit_enabled=False), make_app(ratelimit_enabled=False)]
    key = register(apps[0].test_client(), "alice")

    def send(i: int) -> int:
        body = {**WORKED_EXAMPLE, "accuracy": 40 + (i * 7) % 60}
        client = apps[i % 2].test_client()
        response = client.post("/submit_qualification", json=body, headers=bearer(key))
        assert response.status_code == 201
        return response.get_json()["submission_id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(send, range(64)))

    stored = rows(apps[0])
    assert sorted(ids) == [r.id for r in stored]
    best = max(stored, key=lambda r: (r.score, -r.id))
    assert [r.id for r in stored if r.leads] == [best.id]
    for app in apps:  # both instances read the same index, equal to the database
        board = app.test_client().get("/leaderboard").get_json()
        assert [(e["participant"], e["submission_id"]) for e in board["leaderboard"]] == [("alice", best.id)]
    everything = runtime_of(apps[0]).board.page(0, 100, "all")
    assert [e.submission_id for e in everything.entries] == [
        r.id for r in sorted(stored, key=lambda r: (-r.score, r.id))
    ]


def test_no_submission_keeps_a_score_from_a_retired_profile(make_app):
    app = make_app(ratelimit_enabled=False)
    other = make_app(ratelimit_enabled=False)  # a second worker with its own copy of the profile
    admin = make_admin(app)
    key = register(app.test_client(), "alice")
    new = {
        "weights": {
            "gpu_utilization": 0.5,
            "memory_usage": 0.1,
            "power_efficiency": 0.1,
            "completion_time": 0.2,
            "accuracy": 0.1,
        },
        "time_best": 1,
        "time_worst": 100,
    }
    for client in (app.test_client(), other.test_client()):  # both workers read version 1
        assert client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code == 201
    stop = threading.Event()
    accepted: list[int] = []
    progress = threading.Condition()

    def accepted_at_least(count: int) -> None:
        with progress:
            assert progress.wait_for(lambda: len(accepted) >= count, timeout=120)

    def keep_submitting(worker) -> None:
        client = worker.test_client()
        i = 0
        while not stop.is_set():
            i += 1
            body = {**WORKED_EXAMPLE, "completion_time": 1 + i % 90}
            headers = bearer(key) if i % 2 else {}
            response = client.post("/submit_qualification", json=body, headers=headers)
            assert response.status_code in (201, 503), response.get_json()
            if response.status_code == 201:
                with progress:
                    accepted.append(response.get_json()["submission_id"])
                    progress.notify_all()

    threads = [threading.Thread(target=keep_submitting, args=(w,)) for w in (app, other, other)]
    for thread in threads:
        thread.start()
    try:
        accepted_at_least(20)
        changed = app.test_client().put("/admin/scoring", json=new, headers=bearer(admin))
        assert changed.status_code == 200
        accepted_at_least(len(accepted) + 20)  # and the workers carry on with the new profile
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    profile = Profile(
        weights={m: Decimal(str(w)) for m, w in new["weights"].items()},
        time_best=Decimal(1),
        time_worst=Decimal(100),
    )
    stored = rows(app)
    assert set(accepted) <= {r.id for r in stored}
    for row in stored:
        assert row.profile_version == 2
        assert row.score == score(dict(zip(METRICS, row[4:], strict=True)), profile).total
    # The index followed: both views equal the database's.
    database = DatabaseLeaderboard(get_db(app).autocommit)
    for view in ("best", "all"):
        assert runtime_of(other).board.page(0, 100, view).entries == database.page(0, 100, view).entries
