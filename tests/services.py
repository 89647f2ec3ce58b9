"""Reaching the real PostgreSQL and Redis the tests run against.

Addresses come from GPUQ_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres)
and GPUQ_TEST_REDIS (default redis://127.0.0.1:6379/0). When a service is not
reachable its tests skip loudly, unless REQUIRE_SERVICES=1 (as in CI), where
they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get("GPUQ_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GPUQ_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQUIRED = os.environ.get("REQUIRE_SERVICES") == "1"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # This machine reaches no network: without these Chromium keeps trying.
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)


def unavailable(what: str, why: BaseException) -> None:
    message = f"{what} is not reachable ({type(why).__name__}: {why})"
    if REQUIRED:
        pytest.fail(f"{message}; REQUIRE_SERVICES=1 makes this a failure", pytrace=False)
    pytest.skip(f"{message}: skipping (set REQUIRE_SERVICES=1 to fail instead)")


def create_database() -> str:
    """Create a throw-away PostgreSQL database; returns its URL."""
    name = f"gpuq_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    finally:
        admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def check_redis(url: str = REDIS_URL) -> None:
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except Exception as exc:
        unavailable("Redis", exc)


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    """Wait until something accepts connections on 127.0.0.1:port (polls; fails if `process` dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


def poll(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Wait until `condition()` is truthy (checked every 50 ms); returns its value. For state
    another process reaches in its own time (a server's log line, a lease running out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


class RedisServer:
    """A private redis-server on a free port, so a test may kill and restart it."""

    def __init__(self, workdir: Path):
        if shutil.which("redis-server") is None:
            unavailable("redis-server", FileNotFoundError("redis-server"))
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class PostgresCluster:
    """A private PostgreSQL cluster (initdb in a temporary directory, its own port), so that a
    test may stop, crash or freeze it without touching the shared server."""

    def __init__(self) -> None:
        if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
            unavailable("initdb and pg_ctl", FileNotFoundError("initdb"))
        self.port = free_port()
        # Not under pytest's tmp_path: its directories are private to the test's user, and
        # the cluster runs as postgres when the tests run as root.
        self.home = Path(tempfile.mkdtemp(prefix="gpuq-pg-"))
        self.data = self.home / "data"
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_owner:  # PostgreSQL refuses to run as root
            shutil.chown(self.home, "postgres", "postgres")
        subprocess.run(
            [*self._as_owner, "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *self._as_owner,
                "pg_ctl",
                "-D",
                str(self.data),
                "-o",
                options,
                "-w",
                "-l",
                str(self.home / "log"),
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, ...)."""
        parent = self.postmaster_pid()
        children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
        return [parent, *map(int, children)]

    def freeze(self) -> None:
        """Stop every process of the cluster: connections stay open and acknowledged, nothing answers."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.thaw()
        subprocess.run(
            [*self._as_owner, "pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(self.home, ignore_errors=True)


class CuttableProxy:
    """A TCP proxy to a real server that a test can cut (drop every connection,
    refuse new ones) and restore, to stage an outage without stopping the server."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._up = True
        self._closed = False
        self._flowing = threading.Event()
        self._flowing.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._up:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    @classmethod
    def in_front_of(cls, database_url: str) -> tuple[CuttableProxy, str]:
        """A proxy to the database of `database_url`, and the same URL through the proxy."""
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        proxy = cls(url.host or "127.0.0.1", url.port or 5432)
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        return proxy, proxied

    def cut(self) -> None:
        with self._lock:
            self._up = False
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self._up = True
        self._flowing.set()

    def freeze(self) -> None:
        """Hold every byte, keeping connections open: a server that hangs without closing."""
        self._flowing.clear()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        self.cut()
        self.listener.close()


class EventStream:
    """A Server-Sent Events client in a background thread; events land in a queue."""

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        import queue

        import requests

        self.events: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.response = requests.get(url, stream=True, timeout=(5, 60), headers=headers or {})
        self.status = self.response.status_code
        self._reader = threading.Thread(target=self._read, daemon=True)
        if self.status == 200:
            self._reader.start()

    def reader_alive(self) -> bool:
        """Whether the stream is still open (the server has not ended it)."""
        return self._reader.is_alive()

    def _read(self) -> None:
        import json

        event, data = "message", []
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line == "":
                    if data:
                        self.events.put((event, json.loads("\n".join(data))))
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        except Exception:  # the stream was closed
            pass

    def wait_for(self, kind: str, predicate=lambda data: True, timeout: float = 10.0) -> dict:
        """The first `kind` event whose data satisfies `predicate` (others are skipped)."""
        import queue

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event == kind and predicate(data):
                return data
        raise TimeoutError(f"no {kind} event within {timeout} s")

    def close(self) -> None:
        self.response.close()
