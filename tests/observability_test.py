"""Logs of the real server (`python app.py`: gunicorn, gevent workers), over HTTP: every
line on the server's stdout is one JSON object (gunicorn's own too), the lines of a
request carry the request id the client sent, and no API key appears;
GPUQ_LOG_FORMAT=text writes plain lines instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, WORKED_EXAMPLE, bearer
from tests.services import free_port, wait_for_port


class LoggedServer:
    """`python app.py` on a free port with its stdout and stderr in separate files."""

    def __init__(self, env: dict[str, str], workdir: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stdout_path, self.stderr_path = workdir / "stdout.log", workdir / "stderr.log"
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GPUQ_", "DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"))
        }
        full_env.update(env, PORT=str(self.port))
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=out, stderr=err
            )
        try:
            wait_for_port(self.port, self.process, timeout=60)
        except Exception:
            raise RuntimeError(f"server did not start:\n{self.stdout()}\n{self.stderr()}") from None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stdout line, parsed (fails on a line that is not one JSON object)."""
        return [json.loads(line) for line in self.stdout().splitlines()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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


def poll(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Wait until `condition()` is truthy (checked every 50 ms); returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


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
    assert any(m.startswith("Booting worker") for m in gunicorn) and "Shutting down: Master" in gunicorn
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
