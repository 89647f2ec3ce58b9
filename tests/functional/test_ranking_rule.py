"""One ranking rule, every path: the same generated submissions come out in the same order from
the database query, the Redis index (live and rebuilt), rescoring, the export and the slot line.

The expected order is written out here independently of gpuq.leaderboard.rule: the higher
score first, the earlier (smaller) id between equal scores; view best keeps each
participant's first entry in that order and every anonymous submission.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuq import export
from gpuq.app import runtime_of
from gpuq.leaderboard.index import RedisLeaderboard
from gpuq.leaderboard.query import DatabaseLeaderboard
from gpuq.scoring import METRICS, Profile, score
from gpuq.slots import rules as slot_rules
from tests.conftest import WORKED_EXAMPLE, truncate

NAMES = ("ada", "bob", "cyd", "dee")
# Few distinct values, so that scores tie often (and ties must be broken by id).
submissions = st.lists(
    st.tuples(
        st.sampled_from((None, *NAMES)),
        st.sampled_from((10, 50, 98)),  # accuracy
        st.sampled_from((0, 85)),  # memory usage
        st.sampled_from((30, 90)),  # completion time
    ),
    min_size=1,
    max_size=24,
)
ACCURACY_ONLY = Profile(weights={m: Decimal(1 if m == "accuracy" else 0) for m in METRICS})


def expected(stored: list[tuple[int, str | None, Decimal]]) -> tuple[list[int], list[int]]:
    """(view all, view best) as submission ids, from (id, participant, score) triples."""
    ranked = sorted(stored, key=lambda item: (-item[2], item[0]))
    best, seen = [], set()
    for submission_id, who, _score in ranked:
        if who is None or who not in seen:
            best.append(submission_id)
        if who is not None:
            seen.add(who)
    return [item[0] for item in ranked], best


def ids(page: Any) -> list[int]:
    return [entry.submission_id for entry in page.entries]


def every_path(runtime: Any, count: int) -> dict[str, tuple[list[int], list[int]]]:
    """(view all, view best) from each path that orders submissions."""
    query = DatabaseLeaderboard(runtime.database.autocommit)
    paths = {"database": (ids(query.page(0, count, "all")), ids(query.page(0, count, "best")))}
    if isinstance(runtime.board, RedisLeaderboard):
        paths["redis"] = (ids(runtime.board.page(0, count, "all")), ids(runtime.board.page(0, count, "best")))
        runtime.board.rebuild()
        paths["redis rebuilt"] = (
            ids(runtime.board.page(0, count, "all")),
            ids(runtime.board.page(0, count, "best")),
        )
    with runtime.database.connect() as connection:
        rows = list(export.rows(connection))
    by_rank_all = sorted((r for r in rows if r["rank_all"]), key=lambda r: r["rank_all"])
    by_rank_best = sorted((r for r in rows if r["rank_best"]), key=lambda r: r["rank_best"])
    paths["export order"] = ([r["submission_id"] for r in rows if r["rank_all"]], [])
    paths["export ranks"] = (
        [r["submission_id"] for r in by_rank_all],
        [r["submission_id"] for r in by_rank_best],
    )
    return paths


def slot_line(runtime: Any) -> list[str]:
    runtime.slots.ensure_seeded()
    with runtime.database.connect() as connection:
        policy = slot_rules.policy(connection)
        line = slot_rules.in_line(connection, runtime.clock(), policy, len(NAMES))
    return [entry["participant"] for entry in line]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=submissions)
def test_every_path_ranks_the_same_submissions_in_the_same_order(make_app, generated):
    app = make_app(ratelimit_enabled=False, slots="", db_pool_size=2)  # no slots: nobody leaves the line
    truncate(app)
    runtime = runtime_of(app)
    runtime.board.refresh()
    members = {name: runtime.participants.create(name, is_admin=False, actor=None)[0] for name in NAMES}
    stored = []
    for who, accuracy, memory, seconds in generated:
        values = {**WORKED_EXAMPLE, "accuracy": accuracy, "memory_usage": memory, "completion_time": seconds}
        metrics = {name: Decimal(str(values[name])) for name in METRICS}
        member = None if who is None else members[who]
        answer = json.loads(runtime.submissions.submit(metrics, "10.0.0.1", member).body)
        stored.append((answer["submission_id"], who, Decimal(str(answer["score"]))))
    count = len(stored)

    def check(scored: list[tuple[int, str | None, Decimal]]) -> None:
        want_all, want_best = expected(scored)
        for path, (got_all, got_best) in every_path(runtime, count).items():
            assert got_all == want_all, path
            if path != "export order":
                assert got_best == want_best, path
        for view, want in (("all", want_all), ("best", want_best)):
            for place, submission_id in enumerate(want, start=1):
                entry = next(e for e in runtime.board.page(place - 1, 1, view).entries)
                assert (entry.submission_id, runtime.board.rank(entry, view)) == (submission_id, place)
        who_of = {submission_id: who for submission_id, who, _ in scored}
        assert slot_line(runtime) == [who_of[i] for i in want_best if who_of[i] is not None]

    check(stored)
    # Rescoring reorders by the new scores, by the same rule (its report and every path).
    rescored = [(i, who, score(_metrics_of(runtime, i), ACCURACY_ONLY).total) for i, who, _ in stored]
    trial = runtime.scoring.change(ACCURACY_ONLY, dry_run=True, actor="test", reason=None)
    assert trial.outcome is not None
    assert [e["submission_id"] for e in trial.outcome.leaders] == expected(rescored)[1][:20]
    runtime.scoring.change(ACCURACY_ONLY, dry_run=False, actor="test", reason=None)
    check(rescored)


def _metrics_of(runtime: Any, submission_id: int) -> dict[str, Decimal]:
    detail = runtime.submissions.detail(submission_id)
    return {name: Decimal(str(detail["breakdown"][name]["value"])) for name in METRICS}
