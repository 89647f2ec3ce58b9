"""Metrics and logs of the real server (`python app.py`: gunicorn, gevent workers), over HTTP.

* A known workload on a two-worker server (PostgreSQL, a private Redis), served by
  both workers, shows in GET /metrics exactly, summed over the workers, whichever
  worker answers the scrape; open streams are a live gauge, and a killed worker's
  streams stop counting while its counters stay in the sums.
* The operator's PROMETHEUS_MULTIPROC_DIR is emptied of an earlier run's values.
* Every line on the server's stdout is one JSON object (gunicorn's own too), the
  lines of a request carry the request id the client sent, and no API key appears;
  GPUQ_LOG_FORMAT=text writes plain lines instead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, WORKED_EXAMPLE, Server, bearer
from tests.services import poll

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class LoggedServer(Server):
    """`python app.py` on a free port with its stdout and stderr in separate files."""

    def __init__(self, env: dict[str, str], workdir: Path):
        super().__init__(env, workdir / "stdout.log", workdir / "stderr.log")

    def stdout(self) -> str:
        return self.log()

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stdout line, parsed (fails on a line that is not one JSON object)."""
        return [json.loads(line) for line in self.stdout().splitlines()]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., LoggedServer]]:
    servers: list[LoggedServer] = []

    def start(**env: str) -> LoggedServer:
        workdir = tmp_path / f"server{len(servers)}"
        workdir.mkdir()
        servers.append(LoggedServer(env, workdir))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


class RawStream:
    """GET /leaderboard/stream on a plain socket, read up to the snapshot; `close` really
    closes the connection (the server notices at its next heartbeat)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"GET /leaderboard/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while b"event: snapshot" not in received:
            chunk = self.sock.recv(65536)
            assert chunk, f"the stream ended before its snapshot: {received!r}"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received[:200]

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def scrape(base: str) -> Samples:
    answer = requests.get(f"{base}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def pids_serving(server: LoggedServer, route: str) -> set[int]:
    return {
        line["pid"]
        for line in server.json_lines()
        if line["logger"] == "gpuq.access" and line["route"] == route
    }


def test_metrics_show_a_known_workload_exactly_summed_over_two_workers(serve, database, redis_server):
    server = serve(
        DATABASE_URL=database,
        REDIS_URL=redis_server.url,
        WEB_CONCURRENCY="2",
        GPUQ_SUBMIT_LIMIT="4 per hour",
        GPUQ_DAILY_LIMIT="1000 per day",
        GPUQ_STREAM_HEARTBEAT_SECONDS="0.2",  # a closed stream is noticed at the next one
    )
    base = server.base
    registered = requests.post(f"{base}/participants", json={"name": "alice"}, timeout=10)
    assert registered.status_code == 201
    key = registered.json()["api_key"]
    keyed = requests.post(
        f"{base}/submit_qualification", json=WORKED_EXAMPLE, headers=bearer(key), timeout=10
    )
    assert keyed.status_code == 201  # alice qualifies: the free slot is hers
    anonymous = [
        requests.post(f"{base}/submit_qualification", json=WORKED_EXAMPLE, timeout=10).status_code
        for _ in range(7)
    ]
    accepted, limited = 1 + anonymous.count(201), anonymous.count(429)
    assert limited >= 3 and accepted + limited == 8  # the address's quota of 4 ran out
    invalid = {**WORKED_EXAMPLE, "accuracy": 101}
    for _ in range(3):
        assert requests.post(f"{base}/submit_qualification", json=invalid, timeout=10).status_code == 422
    for _ in range(2):
        assert (
            requests.get(f"{base}/submissions/{keyed.json()['submission_id']}", timeout=10).status_code == 200
        )
    assert requests.get(f"{base}/no/such/page", timeout=10).status_code == 404

    # Leaderboard reads, on fresh connections and several at once, until both workers
    # have answered some: the sums below are then sums over two processes.
    reads = 0
    with ThreadPoolExecutor(max_workers=8) as pool:

        def read_batch() -> bool:
            nonlocal reads
            statuses = list(
                pool.map(lambda _: requests.get(f"{base}/leaderboard", timeout=10).status_code, range(8))
            )
            assert statuses == [200] * 8
            reads += 8
            return len(pids_serving(server, "/leaderboard")) == 2

        poll(read_batch, "both workers answering GET /leaderboard")

    requests_total = "gpuq_http_requests_total"
    submit = {"route": "/submit_qualification", "method": "POST"}
    expected = {
        (requests_total, frozenset({**submit, "status": "201"}.items())): accepted,
        (requests_total, frozenset({**submit, "status": "429"}.items())): limited,
        (requests_total, frozenset({**submit, "status": "422"}.items())): 3,
        (requests_total, frozenset({"route": "/participants", "method": "POST", "status": "201"}.items())): 1,
        (
            requests_total,
            frozenset(
                {"route": "/submissions/<int:submission_id>", "method": "GET", "status": "200"}.items()
            ),
        ): 2,
        (requests_total, frozenset({"route": "unmatched", "method": "GET", "status": "404"}.items())): 1,
        (
            requests_total,
            frozenset({"route": "/leaderboard", "method": "GET", "status": "200"}.items()),
        ): reads,
        (
            "gpuq_http_request_duration_seconds_count",
            frozenset({"route": "/leaderboard", "method": "GET"}.items()),
        ): reads,
        ("gpuq_http_request_duration_seconds_count", frozenset(submit.items())): accepted + limited + 3,
        ("gpuq_submissions_accepted_total", frozenset()): accepted,
        ("gpuq_submissions_refused_total", frozenset({"reason": "rate_limited"}.items())): limited,
        ("gpuq_submissions_refused_total", frozenset({"reason": "invalid"}.items())): 3,
        ("gpuq_rate_limit_refusals_total", frozenset({"scope": "submit"}.items())): limited,
        ("gpuq_slot_changes_total", frozenset({"action": "grant"}.items())): 1,
        ("gpuq_streams_open", frozenset()): 0,
    }
    for _ in range(4):  # whichever worker answers the scrape, the sums are the same
        samples = scrape(base)
        assert {name: samples.get(name, 0.0) for name in expected} == expected
    assert value(samples, "gpuq_build_info", version="0.1.0", commit=build_commit()) == 1
    labels = {v for (_name, pairs) in samples for _key, v in pairs}
    assert not any(
        "127.0.0.1" in v or "alice" in v or v.startswith("/submissions/")
        for v in labels - {"/submissions/<int:submission_id>"}
    )

    # Open streams: a gauge summed over the live workers.
    streams = [RawStream(server.port) for _ in range(2)]
    poll(lambda: value(scrape(base), "gpuq_streams_open") == 2, "two open streams counted")
    for s in streams:
        s.close()
    poll(lambda: value(scrape(base), "gpuq_streams_open") == 0, "closed streams no longer counted")
    samples = scrape(base)
    stream = {"route": "/leaderboard/stream", "method": "GET"}
    assert value(samples, requests_total, **stream, status="200") == 2
    assert ("gpuq_http_request_duration_seconds_count", frozenset(stream.items())) not in samples

    # A worker killed with a stream open: its stream stops counting (gunicorn's child_exit
    # hook), its counters stay in the sums.
    held = RawStream(server.port)
    poll(lambda: value(scrape(base), "gpuq_streams_open") == 1, "the held stream counted")
    holder = [
        line["pid"]
        for line in server.json_lines()
        if line["logger"] == "gpuq.access" and line["route"] == "/leaderboard/stream"
    ][-1]
    os.kill(holder, signal.SIGKILL)
    poll(lambda: value(scrape(base), "gpuq_streams_open") == 0, "the killed worker's stream forgotten")
    held.close()
    samples = scrape(base)
    assert {name: samples.get(name, 0.0) for name in expected} == expected


def build_commit() -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return head.stdout.strip() if head.returncode == 0 else "unknown"


def test_the_operators_multiprocess_directory_is_emptied_of_an_earlier_run(serve, tmp_path):
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = MmapedDict(str(metrics_dir / "counter_99999.db"))  # what a worker of a run before left
    name = "gpuq_submissions_accepted"
    stale.write_value(mmap_key(name, name + "_total", (), (), "x"), 500.0, 0.0)
    stale.close()
    server = serve(
        DATABASE_URL=f"sqlite:///{tmp_path / 'gpuq.sqlite3'}", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)
    )
    assert (
        requests.post(f"{server.base}/submit_qualification", json=WORKED_EXAMPLE, timeout=10).status_code
        == 201
    )
    assert value(scrape(server.base), "gpuq_submissions_accepted_total") == 1
    assert not (metrics_dir / "counter_99999.db").exists()
    assert any(metrics_dir.glob("counter_*.db"))  # the worker wrote its values there


def test_every_stdout_line_is_json_and_carries_the_clients_request_id(serve, database, redis_server):
    server = serve(DATABASE_URL=database, REDIS_URL=redis_server.url, WEB_CONCURRENCY="2")
    base = server.base
    key = requests.post(f"{base}/participants", json={"name": "alice"}, timeout=10).json()["api_key"]
    sent = requests.post(
        f"{base}/submit_qualification",
        json=WORKED_EXAMPLE,
        headers={**bearer(key), "X-Request-ID": "client-id-7f3a"},
        timeout=10,
    )
    assert sent.status_code == 201 and sent.headers["X-Request-ID"] == "client-id-7f3a"
    refused = requests.get(
        f"{base}/leaderboard?api_key={key}", headers={"X-Request-ID": "client-id-8"}, timeout=10
    )
    assert refused.status_code == 400 and refused.json()["request_id"] == "client-id-8"
    bad = requests.get(f"{base}/participants/me", headers={"Authorization": f"Bearer {key}x"}, timeout=10)
    assert bad.status_code == 401
    server.stop()  # its last lines (workers exiting, the master shutting down) are written too

    lines = server.json_lines()  # every line parses, or this fails
    assert all({"ts", "level", "logger", "message", "pid"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("request_id") == "client-id-7f3a"]
    access = [line for line in mine if line["logger"] == "gpuq.access"]
    assert len(access) == 1
    assert (access[0]["route"], access[0]["status"], access[0]["participant"]) == (
        "/submit_qualification",
        201,
        "alice",
    )
    assert isinstance(access[0]["duration_ms"], float)
    assert any(line.get("event") == "submission.accepted" for line in mine)
    assert any(line.get("request_id") == "client-id-8" and line["status"] == 400 for line in lines)
    gunicorn = [line["message"] for line in lines if line["logger"] == "gunicorn.error"]
    # gunicorn's own lines are JSON too (the master's start and its handling of the stop).
    assert any(m.startswith("Booting worker") for m in gunicorn) and "Handling signal: term" in gunicorn
    assert sum(1 for line in lines if line["logger"] == "gpuq.access") == 4  # one per request
    output = server.stdout() + server.stderr()
    assert key not in output and key.split("_")[-1] not in output


def test_the_text_format_writes_plain_lines(serve, tmp_path):
    server = serve(DATABASE_URL=f"sqlite:///{tmp_path / 'gpuq.sqlite3'}", GPUQ_LOG_FORMAT="text")
    answer = requests.get(f"{server.base}/livez", headers={"X-Request-ID": "plain-1"}, timeout=10)
    assert answer.status_code == 200
    line = poll(
        lambda: next((x for x in server.stdout().splitlines() if "gpuq.access: GET /livez 200" in x), None),
        "the access line",
    )
    assert " INFO    gpuq.access: GET /livez 200 " in line and "request_id=plain-1" in line
    assert not any(x.startswith("{") for x in server.stdout().splitlines())
