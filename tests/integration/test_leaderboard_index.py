"""The Redis index ranks exactly like the database, and repairs itself from it."""

from __future__ import annotations

import random
import signal

import redis
from sqlalchemy import text

from gpuq.app import runtime_of
from gpuq.leaderboard.index import RedisLeaderboard
from gpuq.leaderboard.query import DatabaseLeaderboard
from gpuq.store.db import get_db
from tests.conftest import WORKED_EXAMPLE, stored_count
from tests.services import RedisServer


def fill(client, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        # Few distinct values, so that many scores tie.
        body = {**WORKED_EXAMPLE, "accuracy": rng.choice([10, 50, 98]), "memory_usage": rng.choice([0, 85])}
        assert client.post("/submit_qualification", json=body).status_code == 201


def database_ranking(app) -> list[tuple[int, str]]:
    with get_db(app).engine.connect() as connection:
        rows = connection.execute(text("SELECT id, score FROM submissions ORDER BY score DESC, id")).all()
    return [(row.id, f"{row.score:.2f}") for row in rows]


def board_ranking(client) -> list[tuple[int, str]]:
    result = []
    offset = 0
    while True:
        page = client.get(f"/leaderboard?limit=100&offset={offset}").get_json()
        result += [(e["submission_id"], f"{e['score']:.2f}") for e in page["leaderboard"]]
        offset += 100
        if offset >= page["total"]:
            return result


def index_members(app) -> list[int]:
    board = runtime_of(app).board
    members = board._redis.zrevrange(board.key, 0, -1)
    return [int(m.split(b":")[0]) for m in members]


def test_redis_and_database_give_the_same_ranking(make_app):
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    fill(client, 150)
    board = runtime_of(app).board
    assert isinstance(board, RedisLeaderboard)
    database = DatabaseLeaderboard(get_db(app).autocommit)

    for offset, limit in ((0, 150), (37, 20)):
        from_redis, from_database = board.page(offset, limit), database.page(offset, limit)
        assert from_redis.entries == from_database.entries
        assert from_redis.total == from_database.total == 150
        assert from_redis.version is not None and from_database.version is None
    for entry in database.page(0, 150).entries[::7]:
        assert board.rank(entry) == database.rank(entry)
    assert board_ranking(client) == database_ranking(app)
    assert [sid for sid, _ in database_ranking(app)] == index_members(app)


def test_a_flushed_index_is_rebuilt_from_the_database(make_app, redis_url):
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    fill(client, 30)
    board = runtime_of(app).board
    board._redis.delete(board.key)

    assert board_ranking(client) == database_ranking(app)
    assert index_members(app) == [sid for sid, _ in database_ranking(app)]


def test_an_index_of_the_wrong_type_is_replaced(make_app):
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    fill(client, 10)
    board = runtime_of(app).board
    board._redis.set(board.key, "garbage")

    assert board_ranking(client) == database_ranking(app)
    assert board._redis.type(board.key) == b"zset"
    assert index_members(app) == [sid for sid, _ in database_ranking(app)]


def test_garbage_members_are_never_served(make_app):
    app = make_app(ratelimit_enabled=False, index_check_seconds=3600.0)
    client = app.test_client()
    fill(client, 5)
    board = runtime_of(app).board
    client.get("/leaderboard")  # verified once, not again for an hour
    board._redis.zadd(board.keys["best"], {b"not-a-member": 2**52})  # the default view's set

    assert board_ranking(client) == database_ranking(app)  # answered from the database
    assert board.stale
    client.get("/leaderboard")  # the stale index is verified and rebuilt
    assert index_members(app) == [sid for sid, _ in database_ranking(app)]


def test_missing_entries_are_noticed_by_the_count_check(make_app):
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    fill(client, 8)
    board = runtime_of(app).board
    board._redis.zremrangebyrank(board.key, 0, 2)

    # The first check may take the gap for writes in flight; the next one rebuilds.
    client.get("/leaderboard")
    assert board_ranking(client) == database_ranking(app)
    assert len(index_members(app)) == 8


def test_an_index_briefly_behind_the_database_is_not_rebuilt(make_app):
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    fill(client, 4)
    client.get("/leaderboard")
    board = runtime_of(app).board
    # A row committed by another worker that has not indexed it yet.
    with get_db(app).engine.begin() as connection:
        columns = (
            "gpu_utilization, memory_usage, power_efficiency, completion_time, accuracy, score, "
            "points_gpu_utilization, points_memory_usage, points_power_efficiency, points_completion_time, "
            "points_accuracy, profile_version, client_address, created_at"
        )
        connection.execute(
            text(f"INSERT INTO submissions ({columns}) SELECT {columns} FROM submissions LIMIT 1")
        )
    version = board._redis.get(board.version_key)
    assert board.verify() is False
    assert board._redis.get(board.version_key) == version  # not rebuilt
    assert board.verify() is True  # still behind a whole check later: rebuilt
    assert len(index_members(app)) == 5


def test_redis_unreachable_submissions_and_board_keep_working(make_app, backend):
    app = make_app(redis_url="redis://127.0.0.1:1/0", submit_limit="3 per hour")
    client = app.test_client()
    statuses = [client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]  # limits still hold (per worker, in memory)
    assert stored_count(app) == 3
    board = client.get("/leaderboard").get_json()
    assert board["total"] == 3
    assert board_ranking(client) == database_ranking(app)
    health = client.get("/")
    assert health.status_code == 200
    assert health.get_json()["status"] == "degraded"
    assert health.get_json()["checks"]["redis"]["status"] == "down"


def test_index_catches_up_after_redis_comes_back(make_app, tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    try:
        # Retry Redis at once, so that the recovery is seen without waiting out the retry
        # interval (the interval itself: test_a_paused_redis_is_waited_on_once_per_interval).
        app = make_app(redis_url=server.url, ratelimit_enabled=False, redis_retry_seconds=0)
        client = app.test_client()
        fill(client, 3)
        server.stop()
        fill(client, 4, seed=11)
        assert stored_count(app) == 7
        assert board_ranking(client) == database_ranking(app)

        server.start()  # an empty Redis on the same port
        assert board_ranking(client) == database_ranking(app)
        assert index_members(app) == [sid for sid, _ in database_ranking(app)]
    finally:
        server.stop()


def test_paused_redis_costs_bounded_time_not_errors(make_app, tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    try:
        app = make_app(redis_url=server.url, redis_timeout=0.2)
        client = app.test_client()
        assert client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code == 201
        pauser = redis.Redis.from_url(server.url)
        pauser.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        response = client.post("/submit_qualification", json=WORKED_EXAMPLE)
        assert response.status_code == 201
        assert client.get("/leaderboard").status_code == 200
        assert client.get("/").get_json()["status"] == "degraded"
        assert stored_count(app) == 2
    finally:
        server.stop()


def test_a_paused_redis_is_waited_on_once_per_interval(make_app, tmp_path, caplog):
    """After one Redis timeout the worker's limits, index and events use their fallbacks
    for GPUQ_REDIS_RETRY_SECONDS instead of each waiting out a timeout on every request."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        app = make_app(redis_url=server.url, redis_timeout=0.2, redis_retry_seconds=3600)
        client = app.test_client()
        assert client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code == 201
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)  # hangs: connections stay open, nothing answers
        try:
            with caplog.at_level("WARNING", logger="gpuq"):
                for accuracy in (10, 20, 30, 40, 50):
                    answer = client.post(
                        "/submit_qualification", json={**WORKED_EXAMPLE, "accuracy": accuracy}
                    )
                    assert answer.status_code == 201
                    assert answer.get_json()["rank"] is not None  # ranked from the database
                assert board_ranking(client) == database_ranking(app)
        finally:
            server.process.send_signal(signal.SIGCONT)
        waited = [r for r in caplog.records if "Timeout" in r.getMessage()]
        assert len(waited) == 1, [r.getMessage() for r in waited]
        assert stored_count(app) == 6
    finally:
        server.stop()


def test_cached_pages_change_with_every_submission_on_any_worker(make_app):
    first, second = make_app(ratelimit_enabled=False), make_app(ratelimit_enabled=False)
    reader, writer = first.test_client(), second.test_client()
    fill(reader, 3)
    before = reader.get("/leaderboard").get_json()
    assert reader.get("/leaderboard").get_json() == before  # served from the cache
    top = writer.post("/submit_qualification", json={**WORKED_EXAMPLE, "accuracy": 100}).get_json()
    after = reader.get("/leaderboard").get_json()
    assert after["total"] == before["total"] + 1
    assert after["leaderboard"][0]["submission_id"] == top["submission_id"]


def test_a_rebuild_after_a_flush_never_revives_a_cached_page(make_app):
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    fill(client, 3)
    cached = client.get("/leaderboard").get_json()
    board = runtime_of(app).board
    board._redis.delete(board.key, board.version_key)
    with get_db(app).engine.begin() as connection:
        connection.execute(text("DELETE FROM submissions WHERE id = (SELECT min(id) FROM submissions)"))
    fresh = client.get("/leaderboard").get_json()
    assert fresh["total"] == cached["total"] - 1
    assert board_ranking(client) == database_ranking(app)


def test_garbage_under_every_key_costs_no_submission(make_app):
    app = make_app(submit_limit="3 per hour")
    client = app.test_client()
    assert client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code == 201
    board = runtime_of(app).board
    for key in board._redis.scan_iter(match=f"{runtime_of(app).settings.redis_prefix}*"):
        board._redis.delete(key)
        board._redis.hset(key, "garbage", "yes")  # every gpuq key now holds the wrong type

    statuses = [client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code for _ in range(3)]
    assert statuses[:2] == [201, 201]  # limits fell back to memory counters; nothing failed
    assert stored_count(app) == 1 + statuses.count(201)
    assert board_ranking(client) == database_ranking(app)
    assert client.get("/").status_code == 200


def test_an_index_script_lost_by_redis_is_loaded_again(make_app):
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    fill(client, 2)
    board = runtime_of(app).board
    board._redis.script_flush()  # as after a Redis restart: the script cache is empty
    version = int(board._redis.get(board.version_key))
    fill(client, 3, seed=11)
    # Indexed at once, a version step each (one more for the write that found the script
    # missing and ran again); a failed write would have forced a rebuild, which starts a
    # fresh random version.
    assert version + 3 <= int(board._redis.get(board.version_key)) <= version + 4
    assert index_members(app) == [sid for sid, _ in database_ranking(app)]
    assert board_ranking(client) == database_ranking(app)


def test_moderation_rewrites_only_the_entries_concerned(make_app):
    """No rebuild (the version takes one step per change), and both sets equal the database."""
    from tests.conftest import bearer, make_admin, register, submit_as

    app = make_app(ratelimit_enabled=False, index_check_seconds=3600.0)
    client = app.test_client()
    admin = make_admin(app)
    alice, bob = register(client, "alice"), register(client, "bob")
    best = submit_as(client, alice, accuracy=100).get_json()["submission_id"]
    submit_as(client, alice, accuracy=60)
    bobs = submit_as(client, bob, accuracy=80).get_json()["submission_id"]
    anonymous = submit_as(client, None, accuracy=90).get_json()["submission_id"]
    board = runtime_of(app).board
    database = DatabaseLeaderboard(get_db(app).autocommit)
    client.get("/leaderboard")  # verified once, not again for an hour

    def matches() -> bool:
        return all(
            [(e.submission_id, e.participant) for e in board.page(0, 100, view).entries]
            == [(e.submission_id, e.participant) for e in database.page(0, 100, view).entries]
            for view in ("best", "all")
        )

    for url in (
        f"/admin/submissions/{best}/disqualify",
        f"/admin/submissions/{anonymous}/disqualify",
        "/admin/participants/bob/disqualify",
        "/admin/participants/bob/reinstate",
        f"/admin/submissions/{best}/reinstate",
    ):
        version = int(board._redis.get(board.version_key))
        assert client.post(url, json={"reason": "test"}, headers=bearer(admin)).status_code == 200
        assert int(board._redis.get(board.version_key)) == version + 1, url
        assert not board.stale and matches(), url
    holders = {k.decode(): int(v.split(b":")[0]) for k, v in board._redis.hgetall(board.holders_key).items()}
    assert holders == {"alice": best, "bob": bobs}


def test_after_redis_restarts_empty_no_read_or_rank_comes_from_an_incomplete_index(make_app, tmp_path):
    """Two workers that never saw an error (redis-py reconnects quietly) and a long check
    interval: the index written only since the restart must not be trusted."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        settings = {"redis_url": server.url, "ratelimit_enabled": False, "index_check_seconds": 3600.0}
        first, second = make_app(**settings), make_app(**settings)
        one, two = first.test_client(), second.test_client()
        fill(one, 20)
        assert board_ranking(two) == database_ranking(first)
        server.stop()
        server.start()  # empty, on the same port; no request saw it go
        for client in (one, two, one, two):
            low = client.post(
                "/submit_qualification", json={**WORKED_EXAMPLE, "accuracy": 0, "memory_usage": 0}
            )
            assert low.status_code == 201
            ranking = database_ranking(first)
            assert (
                low.get_json()["rank"]
                == [sid for sid, _ in ranking].index(low.get_json()["submission_id"]) + 1
            )
            assert board_ranking(one) == ranking and board_ranking(two) == ranking
        assert index_members(first) == [sid for sid, _ in database_ranking(first)]
    finally:
        server.stop()
