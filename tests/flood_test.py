"""Floods against a real server: slow bodies, connection floods and live streams from a few
addresses must not take the service away from everyone else, and the stream caps must count
open streams exactly and heal by themselves (a killed worker, a Redis restart, HEAD)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from contextlib import ExitStack

import redis

from tests.services import EventStream, poll

SLOW_BODY = (
    b"POST /submit_qualification HTTP/1.1\r\nHost: gpuq\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)
STREAM = b"GET /leaderboard/stream HTTP/1.1\r\nHost: gpuq\r\n\r\n"


def open_connections(
    port: int, source: str, count: int, request: bytes, stack: ExitStack
) -> list[socket.socket]:
    """`count` connections from the loopback address `source`, each having sent `request` (and
    then nothing more); those the server refused at once are left out."""
    opened = []
    for _ in range(count):
        sock = stack.enter_context(socket.socket())
        sock.bind((source, 0))
        sock.settimeout(10)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(request)
        except OSError:
            continue
        opened.append(sock)
    return opened


def answers(socks: list[socket.socket]) -> Counter[str]:
    """How the server has treated each connection so far, without consuming anything: the
    status it answered ("200", "429", ...), "waiting" (open, nothing sent) or "closed"."""
    seen: Counter[str] = Counter()
    for sock in socks:
        sock.setblocking(False)  # else Python waits out the socket's timeout before reading
        try:
            start = sock.recv(16, socket.MSG_PEEK)
        except BlockingIOError:
            seen["waiting"] += 1
            continue
        except OSError:
            start = b""
        seen[start.split(b" ")[1].decode() if start.startswith(b"HTTP/1.1 ") else "closed"] += 1
    return seen


def get_from(port: int, source: str, path: str, timeout: float = 10) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def raw_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP answer (the server closes or sends Content-Length) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_slow_bodies_and_streams_from_a_few_addresses_leave_the_api_answering(start_server, tmp_path):
    """2,000 connections that send headers and then trickle nothing of their body, and 2,000
    stream requests, from eight addresses: the server holds as many as the caps allow
    (256 connections, 5 streams per address), refuses the rest, and another address is
    still answered."""
    server = start_server(
        DATABASE_URL=f"sqlite:///{tmp_path / 'flood.sqlite3'}",
        GPUQ_BODY_TIMEOUT_SECONDS="300",  # the slow bodies stay held while they are counted
    )
    with ExitStack() as stack:
        slow: list[socket.socket] = []
        streams: list[socket.socket] = []
        for i in range(4):
            slow += open_connections(server.port, f"127.0.0.{2 + i}", 500, SLOW_BODY, stack)
        for i in range(4):
            streams += open_connections(server.port, f"127.0.0.{6 + i}", 500, STREAM, stack)
        assert len(slow) + len(streams) == 4000, "every flood connection was accepted by the kernel"
        poll(
            lambda: answers(slow) == {"waiting": 4 * 256, "429": 4 * (500 - 256)},
            "the server holds 256 slow bodies per address and refuses the rest",
        )
        poll(
            lambda: answers(streams) == {"200": 4 * 5, "429": 4 * (500 - 5)},
            "the server streams to 5 connections per address and refuses the rest",
        )
        started = time.monotonic()
        status, _, body = get_from(server.port, "127.0.0.20", "/leaderboard")
        elapsed = time.monotonic() - started
        print(f"GET /leaderboard under the flood: {status} in {elapsed * 1000:.0f} ms")
        assert status == 200
        assert json.loads(body)["total"] == 0
        probe = http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=10, source_address=("127.0.0.21", 0)
        )
        probe.request("GET", "/leaderboard/stream")
        assert probe.getresponse().status == 200  # other addresses still get streams
        probe.close()


def test_a_body_that_does_not_arrive_in_time_is_408(start_server, tmp_path):
    server = start_server(
        DATABASE_URL=f"sqlite:///{tmp_path / 'slow.sqlite3'}", GPUQ_BODY_TIMEOUT_SECONDS="1"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(SLOW_BODY)  # one byte of a thousand, then nothing
        status, headers, body = raw_answer(sock)
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert "did not arrive within 1 s" in json.loads(body)["detail"]


def test_connections_per_address_are_capped(start_server, tmp_path):
    server = start_server(
        DATABASE_URL=f"sqlite:///{tmp_path / 'cap.sqlite3'}", GPUQ_CONNECTIONS_PER_ADDRESS="3"
    )
    with ExitStack() as stack:
        open_connections(server.port, "127.0.0.2", 3, SLOW_BODY, stack)
        # The server may take a moment to count the three; the fourth is refused once it has.
        deadline = time.monotonic() + 10
        while True:
            refused = stack.enter_context(socket.socket())
            refused.bind(("127.0.0.2", 0))
            refused.settimeout(10)
            refused.connect(("127.0.0.1", server.port))
            refused.sendall(b"GET /leaderboard HTTP/1.1\r\nHost: gpuq\r\n\r\n")
            status, headers, body = raw_answer(refused)
            if status == 429 or time.monotonic() > deadline:
                break
        assert status == 429
        assert headers["content-type"] == "application/problem+json"
        assert "more than 3 open connections" in json.loads(body)["detail"]
        assert get_from(server.port, "127.0.0.3", "/leaderboard")[0] == 200  # another address


def stream_status(base: str) -> int:
    stream = EventStream(f"{base}/leaderboard/stream")
    try:
        return stream.status
    finally:
        stream.close()


def test_head_of_the_stream_takes_no_stream_slot(start_server, tmp_path):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path / 'head.sqlite3'}", GPUQ_STREAMS_PER_ADDRESS="1")
    for _ in range(3):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("HEAD", "/leaderboard/stream")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/event-stream")
        connection.close()
    assert stream_status(server.base) == 200  # the one slot is still free


def worker_pids(server) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def test_a_killed_workers_streams_stop_counting_and_a_redis_restart_recounts_open_ones(
    start_server, database, redis_server
):
    server = start_server(
        DATABASE_URL=database,
        REDIS_URL=redis_server.url,
        WEB_CONCURRENCY="1",
        GPUQ_STREAMS_PER_ADDRESS="2",
        GPUQ_STREAM_HEARTBEAT_SECONDS="0.3",
        GPUQ_REDIS_RETRY_SECONDS="0.5",
    )
    leases = redis.Redis.from_url(redis_server.url)
    key = "gpuq:streams:127.0.0.1"

    # A worker killed with its two streams open: they stop counting a lease later.
    doomed = [EventStream(f"{server.base}/leaderboard/stream") for _ in range(2)]
    assert [s.status for s in doomed] == [200, 200]
    assert stream_status(server.base) == 429
    (worker,) = worker_pids(server)
    os.kill(worker, signal.SIGKILL)
    for stream in doomed:
        stream.close()
    poll(lambda: worker_pids(server) not in ([], [worker]), "gunicorn started a new worker")
    poll(lambda: stream_status(server.base) == 200, "the dead worker's streams no longer count")

    poll(lambda: leases.zcard(key) == 0, "the probe's stream, closed, leaves the count")

    # Redis restarted empty under two open streams: their renewals count them again.
    held = [EventStream(f"{server.base}/leaderboard/stream") for _ in range(2)]
    try:
        assert [s.status for s in held] == [200, 200]
        redis_server.stop()
        redis_server.start()
        leases.close()
        leases = redis.Redis.from_url(redis_server.url)
        poll(lambda: leases.zcard(key) == 2, "both open streams counted again")
        assert stream_status(server.base) == 429
    finally:
        for stream in held:
            stream.close()
    poll(lambda: leases.zcard(key) == 0, "closed streams leave the count")
    leases.close()


def test_sigterm_finishes_requests_in_flight_ends_streams_and_takes_no_new_ones(start_server, tmp_path):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path / 'drain.sqlite3'}")
    stream = EventStream(f"{server.base}/leaderboard/stream")
    assert stream.status == 200
    stream.wait_for("snapshot")
    body = json.dumps(
        {
            "gpu_utilization": 90,
            "memory_usage": 85,
            "power_efficiency": 95,
            "completion_time": 30,
            "accuracy": 98,
        }
    ).encode()
    in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    head = (
        "POST /submit_qualification HTTP/1.1\r\nHost: gpuq\r\nContent-Type: application/json\r\n"
        f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    in_flight.sendall(head)
    # The worker answers "100 Continue" once it has parsed the headers: the request is in
    # its hands, not in the listener's backlog, when the signal comes.
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):
        chunk = in_flight.recv(1)
        assert chunk, f"closed before 100 Continue: {interim!r}"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim
    in_flight.sendall(body[:10])

    server.process.send_signal(signal.SIGTERM)
    # The stream is ended by the worker, not by the graceful timeout: it is over before the
    # request in flight (still waiting for its body) is.
    poll(lambda: not stream.reader_alive(), "the stream ended")
    stream.close()

    poll(lambda: _refuses(server.port), "new connections are refused")

    in_flight.sendall(body[10:])
    status, _, answer = raw_answer(in_flight)
    in_flight.close()
    assert status == 201
    assert json.loads(answer)["score"] == 87.95
    assert server.process.wait(timeout=30) == 0
    assert "Worker graceful timeout" not in server.log()


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True
