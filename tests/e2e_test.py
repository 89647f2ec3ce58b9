"""End to end: the real server (`python app.py`, gunicorn + gevent) over HTTP.

Runs the README's curl flows against PostgreSQL and Redis, kills Redis under
load, and races two server processes for one address's quota.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import SPEC_CURL_BODY, WORKED_EXAMPLE, bearer, http_qualify, http_register
from tests.services import CHROMIUM_FLAGS, CuttableProxy, RedisServer, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def run_quietly(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a command in the repository root to its end, capturing its output."""
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def first_admin(database: str) -> str:
    """Create the first admin with the command line, as the README says; returns the key."""
    command = [sys.executable, "-m", "gpuq", "participants", "create", "organiser", "--admin"]
    created = run_quietly(command, {**os.environ, "DATABASE_URL": database})
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def stored(database: str) -> list[tuple[int, str]]:
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, score FROM submissions ORDER BY score DESC, id")).all()
    engine.dispose()
    return [(row.id, f"{row.score:.2f}") for row in rows]


def curl(*args: str) -> tuple[int, dict[str, str], Any]:
    """Run curl like the README does; returns status, headers and the JSON body."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    result = subprocess.run(
        ["curl", "-s", "-i", *args], capture_output=True, text=True, timeout=30, check=True
    )
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


def test_readme_curl_flows(start_server, database, redis_server):
    server = start_server(DATABASE_URL=database, REDIS_URL=redis_server.url, WEB_CONCURRENCY="2")
    assert "serving on" in server.log() and "2 worker(s)" in server.log()

    status, _, health = curl(f"{server.base}/")
    assert status == 200
    assert health["status"] == "healthy"
    assert health["timestamp"].endswith("Z")

    status, headers, created = curl(
        "-X",
        "POST",
        f"{server.base}/submit_qualification",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps(SPEC_CURL_BODY),
    )
    assert status == 201
    assert created["success"] is True
    assert created["score"] == 83.31
    assert headers["location"] == f"/submissions/{created['submission_id']}"

    status, _, board = curl(f"{server.base}/leaderboard")
    assert status == 200
    assert board["leaderboard"][0]["submission_id"] == created["submission_id"]
    assert stored(database) == [(created["submission_id"], "83.31")]


def test_worked_example_and_the_eleventh_submission(start_server, database, redis_server):
    server = start_server(DATABASE_URL=database, REDIS_URL=redis_server.url, WEB_CONCURRENCY="2")
    responses = [
        requests.post(f"{server.base}/submit_qualification", json=WORKED_EXAMPLE, timeout=10)
        for _ in range(11)
    ]
    assert [r.status_code for r in responses] == [201] * 10 + [429]
    assert responses[0].json()["score"] == 87.95
    refused = responses[-1]
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    assert requests.get(f"{server.base}/leaderboard", timeout=10).status_code == 200
    assert len(stored(database)) == 10


def test_chunked_body_over_the_limit_is_413(start_server, database, redis_server):
    server = start_server(DATABASE_URL=database, REDIS_URL=redis_server.url)

    def chunks():
        yield json.dumps(WORKED_EXAMPLE).encode()
        for _ in range(64):
            yield b" " * 1024

    response = requests.post(
        f"{server.base}/submit_qualification",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert stored(database) == []


def test_killing_redis_loses_nothing_and_the_index_recovers(start_server, database, redis_server):
    server = start_server(
        DATABASE_URL=database,
        REDIS_URL=redis_server.url,
        WEB_CONCURRENCY="2",
        GPUQ_RATELIMIT_ENABLED="0",
        GPUQ_INDEX_CHECK_SECONDS="0",
        GPUQ_REDIS_TIMEOUT="0.3",
        GPUQ_REDIS_RETRY_SECONDS="0",  # see the index recover without waiting out the retry interval
    )
    accepted = []

    def submit(accuracy: int) -> None:
        response = requests.post(
            f"{server.base}/submit_qualification", json={**WORKED_EXAMPLE, "accuracy": accuracy}, timeout=10
        )
        assert response.status_code == 201, response.text
        accepted.append(response.json()["submission_id"])

    for accuracy in (10, 50, 98):
        submit(accuracy)
    redis_server.stop()
    for accuracy in (20, 98, 60, 99, 5):
        submit(accuracy)
    board = requests.get(f"{server.base}/leaderboard?limit=100", timeout=10)
    assert board.status_code == 200
    ranking = [(e["submission_id"], f"{e['score']:.2f}") for e in board.json()["leaderboard"]]
    assert ranking == stored(database)
    assert requests.get(f"{server.base}/", timeout=10).json()["status"] == "degraded"

    redis_server.start()  # comes back empty
    for _ in range(2):  # reach both workers' next verification
        board = requests.get(f"{server.base}/leaderboard?limit=100", timeout=10)
        assert board.status_code == 200
    index = redis_server_members(redis_server)
    assert index == [sid for sid, _ in stored(database)]
    assert sorted(accepted) == sorted(index)


def test_after_redis_restarts_empty_every_read_and_rank_equals_the_database(
    start_server, database, redis_server
):
    """Two workers with the default index check interval: from the restart on, no answer
    comes from the incomplete index (its missing version says so)."""
    server = start_server(
        DATABASE_URL=database, REDIS_URL=redis_server.url, WEB_CONCURRENCY="2", GPUQ_RATELIMIT_ENABLED="0"
    )
    session = requests.Session()  # the default index check interval (10 s) is far longer than the test

    def submit(accuracy: int) -> tuple[int, int]:
        response = session.post(
            f"{server.base}/submit_qualification", json={**WORKED_EXAMPLE, "accuracy": accuracy}, timeout=10
        )
        assert response.status_code == 201, response.text
        return response.json()["submission_id"], response.json()["rank"]

    def check(accuracies: tuple[int, ...]) -> None:
        for accuracy in accuracies:
            submission_id, rank = submit(accuracy)
            ranking = [sid for sid, _ in stored(database)]
            assert rank == ranking.index(submission_id) + 1
            board = session.get(f"{server.base}/leaderboard?view=all&limit=100", timeout=10).json()
            assert [e["submission_id"] for e in board["leaderboard"]] == ranking
            assert board["total"] == len(ranking)

    for accuracy in range(5, 100, 5):
        submit(accuracy)
    redis_server.stop()
    redis_server.start()  # empty; the workers' connections break, so they notice
    check((97, 3, 50, 99))
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()  # empty, and nothing breaks: nobody notices
    check((1, 64, 98, 12))
    session.close()


def redis_server_members(server: RedisServer) -> list[int]:
    import redis

    client = redis.Redis.from_url(server.url)
    keys = [k for k in client.keys("*leaderboard") if client.type(k) == b"zset"]
    assert len(keys) == 1, keys
    return [int(m.split(b":")[0]) for m in client.zrevrange(keys[0], 0, -1)]


def test_two_servers_share_one_quota_exactly(start_server, database, redis_server):
    env = {"DATABASE_URL": database, "REDIS_URL": redis_server.url, "WEB_CONCURRENCY": "2"}
    servers = [start_server(**env), start_server(**env)]
    barrier = threading.Barrier(50)

    def attempt(i: int) -> int:
        with requests.Session() as session:
            barrier.wait()
            return session.post(
                f"{servers[i % 2].base}/submit_qualification", json=WORKED_EXAMPLE, timeout=30
            ).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(attempt, range(50)))
    assert statuses.count(201) == 10
    assert statuses.count(429) == 40
    assert len(stored(database)) == 10


def test_a_burst_of_600_from_one_address_accepts_exactly_ten_before_and_after_a_redis_restart(
    start_server, database, redis_server
):
    """More simultaneous requests than the Redis pool has connections: they wait for one
    instead of failing over to per-worker memory counters; after Redis restarts empty the
    exhausted address is still exhausted (the limit is seeded from the stored submissions)."""
    env = {
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "WEB_CONCURRENCY": "2",
        "GPUQ_DAILY_LIMIT": "100000 per day",  # so that every request reaches the submission limit
    }
    servers = [start_server(**env), start_server(**env)]

    def burst(size: int) -> list[int]:
        barrier = threading.Barrier(size)

        def attempt(i: int) -> int:
            with requests.Session() as session:
                barrier.wait()
                url = f"{servers[i % 2].base}/submit_qualification"
                return session.post(url, json=WORKED_EXAMPLE, timeout=60).status_code

        with ThreadPoolExecutor(max_workers=size) as pool:
            return list(pool.map(attempt, range(size)))

    statuses = burst(600)
    assert statuses.count(201) == 10, sorted(set(statuses))
    assert statuses.count(429) == 590
    assert len(stored(database)) == 10

    redis_server.stop()
    redis_server.start()  # the same port, empty
    statuses = burst(200)
    assert statuses.count(429) == 200, sorted(set(statuses))
    assert len(stored(database)) == 10


def test_embedded_mode_runs_one_worker_on_sqlite(start_server, tmp_path):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path / 'e2e.sqlite3'}", WEB_CONCURRENCY="4")
    assert "embedded mode" in server.log()
    assert "1 worker(s)" in server.log()
    health = requests.get(f"{server.base}/", timeout=10).json()
    assert health["status"] == "healthy"
    assert health["checks"]["redis"]["status"] == "not_configured"
    response = requests.post(f"{server.base}/submit_qualification", json=WORKED_EXAMPLE, timeout=10)
    assert response.status_code == 201
    assert response.json()["score"] == 87.95


def test_unreachable_database_at_start_is_explained(tmp_path):
    env = {**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    result = run_quietly([sys.executable, "app.py", "--port", str(free_port())], env)
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "pg_isready" in result.stderr


def test_database_outage_answers_503_fast_loses_nothing_and_recovers(start_server, database, redis_server):
    proxy, through_proxy = CuttableProxy.in_front_of(database)
    try:
        server = start_server(
            DATABASE_URL=through_proxy,
            REDIS_URL=redis_server.url,
            WEB_CONCURRENCY="1",
            GPUQ_RATELIMIT_ENABLED="0",
            GPUQ_DB_TIMEOUT="1",
        )
        acknowledged = []

        def submit() -> requests.Response:
            response = requests.post(f"{server.base}/submit_qualification", json=WORKED_EXAMPLE, timeout=15)
            if response.status_code == 201:
                acknowledged.append(response.json()["submission_id"])
            return response

        assert submit().status_code == 201
        proxy.cut()
        during = [submit() for _ in range(3)]
        assert [r.status_code for r in during] == [503, 503, 503]
        assert all(r.headers["Content-Type"] == "application/problem+json" for r in during)
        assert all(int(r.headers["Retry-After"]) > 0 for r in during)
        assert all(r.elapsed.total_seconds() < 5 for r in during)
        health = requests.get(f"{server.base}/", timeout=15)
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"

        proxy.restore()
        after = [submit().status_code for _ in range(3)]
        assert after[-1] == 201 and set(after) <= {201, 503}
        assert requests.get(f"{server.base}/", timeout=15).json()["status"] == "healthy"
        assert sorted(sid for sid, _ in stored(database)) == sorted(acknowledged)
    finally:
        proxy.close()


def test_dot_env_is_read_from_the_working_directory(tmp_path):
    port = free_port()
    (tmp_path / ".env").write_text(
        f"DATABASE_URL=sqlite:///{tmp_path / 'dotenv.sqlite3'}\nGPUQ_SUBMIT_LIMIT=1 per hour\nPORT={port}\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GPUQ_", "DATABASE_URL", "REDIS_URL", "PORT"))
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, timeout=60)
        base = f"http://127.0.0.1:{port}"
        statuses = [
            requests.post(f"{base}/submit_qualification", json=WORKED_EXAMPLE, timeout=10).status_code
            for _ in range(2)
        ]
        assert statuses == [201, 429]
        assert (tmp_path / "dotenv.sqlite3").exists()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_pending_migrations_with_auto_migrate_off_refuse_to_start(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}", "GPUQ_AUTO_MIGRATE": "0"}
    result = run_quietly([sys.executable, "app.py", "--port", str(free_port())], env)
    assert result.returncode == 1
    assert "gpuq db upgrade" in result.stderr


def test_db_upgrade_command_then_start_without_auto_migrate(start_server, tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url}
    upgrade = run_quietly([sys.executable, "-m", "gpuq", "db", "upgrade"], env)
    assert upgrade.returncode == 0, upgrade.stderr
    current = run_quietly([sys.executable, "-m", "gpuq", "db", "current"], env)
    assert current.returncode == 0 and "up to date" in current.stdout
    server = start_server(DATABASE_URL=url, GPUQ_AUTO_MIGRATE="0")
    assert (
        requests.post(f"{server.base}/submit_qualification", json=WORKED_EXAMPLE, timeout=10).status_code
        == 201
    )


def chromium() -> str:
    """Debian's headless Chromium; its absence skips (fails where services are required)."""
    path = shutil.which("chromium")
    if path is None:
        from tests.services import unavailable

        unavailable("chromium", FileNotFoundError("chromium (Debian package `chromium`)"))
    return path


def test_docs_render_in_a_real_browser_without_network(start_server, tmp_path):
    browser = chromium()
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path / 'docs.sqlite3'}")
    result = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--enable-logging=stderr",
            "--virtual-time-budget=10000",
            "--dump-dom",
            f"{server.base}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = result.stdout
    # Swagger UI rendered the spec it fetched from this service: the title, and each operation.
    assert "GPU Qualification Scoring API" in dom
    for operation in ("/submit_qualification", "/leaderboard", "/submissions/{submission_id}", "/quota"):
        assert operation in dom
    assert "Content Security Policy" not in result.stderr  # nothing was blocked by the policy


def test_a_worker_killed_mid_request_then_a_retry_with_the_same_key_stores_exactly_once(
    start_server, database, redis_server
):
    # Rate limits off, so the only Redis call of a submission is indexing it, after the commit.
    server = start_server(
        DATABASE_URL=database,
        REDIS_URL=redis_server.url,
        WEB_CONCURRENCY="1",
        GPUQ_RATELIMIT_ENABLED="0",
        GPUQ_REDIS_TIMEOUT="60",
    )
    assert (
        requests.post(f"{server.base}/submit_qualification", json=WORKED_EXAMPLE, timeout=10).status_code
        == 201
    )
    engine = create_engine(database)
    headers = {"Idempotency-Key": "killed-mid-request"}
    outcome: dict[str, object] = {}

    def first_attempt() -> None:
        try:
            outcome["response"] = requests.post(
                f"{server.base}/submit_qualification", json=WORKED_EXAMPLE, headers=headers, timeout=60
            )
        except requests.RequestException as exc:
            outcome["error"] = exc

    # Redis stopped (not gone): the submission commits, then its worker waits on the index.
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        attempt = threading.Thread(target=first_attempt)
        attempt.start()
        for _ in range(600):  # until the submission is committed (bounded)
            with engine.connect() as connection:
                done = "SELECT count(*) FROM idempotency_keys WHERE state = 'done'"
                if connection.execute(text(done)).scalar_one():
                    break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the first attempt never committed")
        workers = subprocess.run(
            ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        os.kill(int(workers[0]), signal.SIGKILL)
        attempt.join(timeout=60)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert "response" not in outcome  # never acknowledged: the connection died with the worker

    for _ in range(600):  # retry as a client would, until a new worker answers (bounded)
        try:
            retry = requests.post(
                f"{server.base}/submit_qualification", json=WORKED_EXAMPLE, headers=headers, timeout=60
            )
            break
        except requests.ConnectionError:
            threading.Event().wait(0.1)
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    submission_id = retry.json()["submission_id"]
    assert [sid for sid, _ in stored(database)] == [1, submission_id]  # the warm-up and this one, once
    engine.dispose()


def test_participants_and_an_organiser_against_two_server_processes(start_server, database, redis_server):
    """The first admin from the command line; keys over HTTP; one participant limited once
    across addresses and servers; a profile change seen by both; no key in any log."""
    admin_key = first_admin(database)
    admin = bearer(admin_key)
    settings = {
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "WEB_CONCURRENCY": "2",
        "GPUQ_TRUSTED_PROXIES": "1",
        "GPUQ_PARTICIPANT_LIMIT": "3 per hour",
    }
    servers = [start_server(**settings), start_server(**settings)]
    alice_key = http_register(servers[0].base, "alice")
    alice = bearer(alice_key)

    statuses = []
    for i, address in enumerate(["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"]):
        response = requests.post(
            f"{servers[i % 2].base}/submit_qualification",
            json={**WORKED_EXAMPLE, "accuracy": 50 + i},
            headers={**alice, "X-Forwarded-For": address},
            timeout=10,
        )
        statuses.append(response.status_code)
    assert statuses == [201, 201, 201, 429]

    board = requests.get(f"{servers[1].base}/leaderboard", timeout=10).json()["leaderboard"]
    assert [(e["participant"], e["score"]) for e in board] == [("alice", 81.05)]  # accuracy 52
    new_profile = {
        "weights": {
            "gpu_utilization": 0.2,
            "memory_usage": 0.2,
            "power_efficiency": 0.2,
            "completion_time": 0.2,
            "accuracy": 0.2,
        },
        "time_best": 0,
        "time_worst": 60,
    }
    changed = requests.put(f"{servers[0].base}/admin/scoring", json=new_profile, headers=admin, timeout=60)
    assert changed.status_code == 200 and changed.json()["version"] == 2
    for server in servers:  # both processes show the rescored board, and score new entries with it
        board = requests.get(f"{server.base}/leaderboard", timeout=10).json()["leaderboard"]
        assert [e["score"] for e in board] == [74.4]  # 0.2 x (90 + 85 + 95 + 52) + 10 time points
    anonymous = requests.post(f"{servers[1].base}/submit_qualification", json=WORKED_EXAMPLE, timeout=10)
    assert anonymous.json()["score"] == 83.6
    assert requests.get(f"{servers[1].base}/admin/audit", headers=alice, timeout=10).status_code == 403

    secrets_ = [alice_key[18:], admin_key[18:]]
    for server in servers:
        assert not any(secret in server.log() for secret in secrets_)


def test_slot_race_two_servers_sixteen_threads_never_double_lease(start_server, database, redis_server):
    """Two server processes (each with its sweeper running every 50 ms) and 16 threads
    releasing slots as fast as they are granted, against a pool of 3 slots, until each
    of 40 ranked participants has had exactly one turn (the cooldown outlasts the test).
    A checker over the lease history then proves: never two live leases on one slot,
    never two for one participant, and every grant went to the best eligible one."""
    admin_key = first_admin(database)
    admin = bearer(admin_key)
    settings = {
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "WEB_CONCURRENCY": "2",
        "GPUQ_RATELIMIT_ENABLED": "0",
        "GPUQ_SLOT_COOLDOWN_HOURS": "1000",
        "GPUQ_SLOT_SWEEP_SECONDS": "0.05",
    }
    servers = [start_server(**settings), start_server(**settings)]
    assert requests.put(f"{servers[0].base}/admin/slots/size", json={"size": 0}, headers=admin, timeout=10).ok
    count, threads = 40, 16

    def enter(i: int) -> tuple[str, str]:
        name = f"racer{i:02d}"  # distinct scores: racer00 ranks first
        return name, http_qualify(servers[i % 2].base, name, accuracy=99 - i)

    with ThreadPoolExecutor(threads) as pool:
        keys = dict(pool.map(enter, range(count)))
    assert requests.put(f"{servers[1].base}/admin/slots/size", json={"size": 3}, headers=admin, timeout=10).ok

    done = threading.Event()

    def release_mine(t: int) -> int:
        mine = {name for i, name in enumerate(sorted(keys)) if i % threads == t}
        released = 0
        while not done.is_set():
            state = requests.get(f"{servers[t % 2].base}/slots", timeout=10).json()
            for slot in state["slots"]:
                if slot["holder"] in mine and slot["lease_state"] == "held":
                    response = requests.post(
                        f"{servers[(t + 1) % 2].base}/slots/{slot['name']}/release",
                        headers=bearer(keys[slot["holder"]]),
                        timeout=10,
                    )
                    assert response.status_code in (200, 404)  # 404: it just expired or was released
                    released += response.status_code == 200
            if not state["in_line"] and all(slot["holder"] is None for slot in state["slots"]):
                leases = requests.get(f"{servers[t % 2].base}/slots/history?limit=1", timeout=10).json()
                if leases["total"] == count:
                    done.set()  # everyone has had a turn
        return released

    with ThreadPoolExecutor(threads) as pool:
        released = sum(pool.map(release_mine, range(threads)))

    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        leases = connection.execute(
            text(
                "SELECT l.id, l.slot_name, p.name, l.granted_at, l.ended_at, l.end_reason "
                "FROM leases l JOIN participants p ON p.id = l.participant_id ORDER BY l.id"
            )
        ).all()
    engine.dispose()
    assert len(leases) == count
    assert released == count
    # Only the top eligible win: everyone was eligible from the start, and nobody twice,
    # so the grants must follow the ranking exactly.
    assert [lease.name for lease in leases] == sorted(keys)
    assert all(lease.end_reason == "released" for lease in leases)
    for owner in ("slot_name", "name"):  # never two live leases for one slot, or for one participant
        by_owner: dict[str, list] = {}
        for lease in leases:
            by_owner.setdefault(getattr(lease, owner), []).append(lease)
        for owned in by_owner.values():
            for earlier, later in itertools.pairwise(owned):
                assert earlier.ended_at <= later.granted_at, (earlier, later)


def _raw_exchange(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes to the server; returns the status line, headers and body it answers."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status, headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"THIS IS NOT HTTP\r\n\r\n", 400),
        (b"GET /" + b"a" * 4500 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),  # the limit is 4094
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    ],
)
def test_requests_the_http_server_cannot_parse_get_problem_json_too(
    start_server, tmp_path, request_bytes, status
):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path / 'gpuq.sqlite3'}")
    status_line, headers, body = _raw_exchange(server.port, request_bytes)
    assert status_line.startswith(f"HTTP/1.1 {status} ")
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    problem = json.loads(body)
    assert problem["status"] == status and problem["detail"]
