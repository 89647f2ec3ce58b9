"""The production server: gunicorn with gevent workers, through gunicorn's application API.

Start-up order, all in the master process: read `.env` and the environment,
send every log line to stdout in GPUQ_LOG_FORMAT (gpuq.logs; gunicorn's own lines
too, through GpuqLogger), prepare the metrics directory shared by the workers
(`prepare_metrics_dir`), apply pending migrations (under the migration lock;
`GPUQ_AUTO_MIGRATE=0` skips this), report what the service runs on, then fork
the workers; each worker builds its own app (engines and pools after the fork).
Start-up failures that stop the server are also printed plainly on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from dotenv import load_dotenv
from gunicorn import glogging
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.ggevent import GeventWorker

from gpuq import logs
from gpuq.config import ConfigError, Settings

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("gpuq.server")


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request it cannot parse (bad framing, a request line or
    headers too large), as problem+json with the service's security headers instead of
    gunicorn's HTML page: every error leaving the service has the same shape."""
    body = json.dumps(
        {"type": "about:blank", "title": reason, "status": status_int, "detail": mesg or reason},
        separators=(",", ":"),
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin1") + body)


API_HEADROOM = 2000
"""Connections a worker accepts beyond its live-stream cap (Settings.streams_per_worker), so
that with every stream slot taken it can still send the 503 and answer the JSON API."""


class GpuqWorker(GeventWorker):
    """gunicorn's gevent worker, with:

    * a cap on open connections per client socket address
      (Settings.connections_per_address): a flood of slow connections from a few
      addresses cannot use up the worker's connections, which others need;
    * its live streams ended when told to stop, so that a graceful shutdown or
      restart does not wait out the graceful timeout on them (clients reconnect to
      another worker at once);
    * gunicorn's own error pages as problem+json.
    """

    def init_process(self) -> None:
        # gunicorn writes its own error pages through this one function (Worker.handle_error
        # looks it up at call time); the worker process answers them our way instead.
        gunicorn_util.write_error = write_problem
        self._per_address = getattr(self.app, "settings", Settings()).connections_per_address
        self._connections: dict[str, int] = {}
        super().init_process()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        address = addr[0] if isinstance(addr, tuple) else str(addr)
        open_now = self._connections.get(address, 0)
        if self._per_address and open_now >= self._per_address:
            with contextlib.suppress(OSError):
                write_problem(
                    client,
                    429,
                    "Too Many Requests",
                    f"more than {self._per_address} open connections from this address",
                )
            client.close()
            return
        self._connections[address] = open_now + 1
        try:
            super().handle(listener, client, addr)
        finally:
            left = self._connections[address] - 1
            if left:
                self._connections[address] = left
            else:
                del self._connections[address]

    def handle_exit(self, sig: int, frame: Any) -> None:
        from gpuq.api.context import EXTENSION

        runtime = getattr(self.wsgi, "extensions", {}).get(EXTENSION)  # None in gunicorn's error app
        if runtime is not None:
            runtime.draining.set()  # /readyz answers 503 from now on
            runtime.bus.close_all()
        super().handle_exit(sig, frame)


class GpuqLogger(glogging.Logger):
    """gunicorn's logger, writing its lines (start, workers booting and exiting, errors)
    through the root logger's handler, in the service's format on stdout (gpuq.logs),
    instead of its own handler on stderr. Its access log stays off: gpuq.api.observe
    writes one line per request, with the request id and the participant."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


def prepare_metrics_dir(workers: int, environ: dict[str, str]) -> str | None:
    """Before any process imports prometheus_client: the directory through which the
    workers' metrics are summed (gpuq.metrics), emptied; None when there is none to share.

    PROMETHEUS_MULTIPROC_DIR, when set, is used (and emptied of earlier runs' files) with
    any number of workers; otherwise more than one worker gets a new private directory,
    which `remove_metrics_dir` deletes when the server stops, and one worker needs none
    (its own registry is exact). Raises RuntimeError when prometheus_client was imported
    already: it decides at import whether values are shared, and would not share them.
    """
    given = environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not given and workers <= 1:
        return None
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):  # an earlier run's workers
            os.remove(stale)
        return given
    path = tempfile.mkdtemp(prefix="gpuq-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # inherited by the workers
    return path


def remove_metrics_dir(path: str | None, environ: dict[str, str], owner: int) -> None:
    """Delete the directory `prepare_metrics_dir` made (never one the operator gave), in the
    process `owner` (the master) only: a worker leaves gunicorn by SystemExit, through the
    same stack as the master, and must not take the directory with it."""
    if path is not None and not environ.get("PROMETHEUS_MULTIPROC_DIR") and os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn's hook in the master after a worker exited: its live gauges (open streams)
    stop counting; its counters stay in the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # unannotated upstream


class GpuqServer(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:  # runs in each worker after the fork
        from gpuq.app import create_app, runtime_of

        app = create_app(self.settings)
        runtime_of(app).slots.start_sweeper()  # every worker sweeps; the database makes that safe
        return app


def parse_args(
    argv: list[str] | None, environ: dict[str, str], prog: str = "python app.py"
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="Serve the gpuq API.")
    parser.add_argument(
        "--host", default=environ.get("HOST", "127.0.0.1"), help="address to bind (HOST; default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=int(environ.get("PORT", "5000")), help="port (PORT; default 5000)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(environ["WEB_CONCURRENCY"]) if environ.get("WEB_CONCURRENCY") else None,
        help="worker processes (WEB_CONCURRENCY; default: CPU count; always 1 without Redis)",
    )
    return parser.parse_args(argv)


def worker_count(requested: int | None, settings: Settings) -> int:
    """Without Redis the rate-limit counters live in the process: exactly one worker keeps them exact."""
    if settings.embedded:
        return 1
    return requested if requested and requested > 0 else (os.cpu_count() or 1)


def describe(settings: Settings) -> str:
    database = (
        "SQLite (instance/gpuq.sqlite3)" if not settings.database_url else _redact(settings.sqlalchemy_url)
    )
    if settings.embedded:
        return f"embedded mode: database {database}, in-process rate limits and leaderboard query, one worker"
    return f"database {database}, Redis {_redact(settings.redis_url)}"


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def prepare_database(settings: Settings) -> bool:
    """Apply pending migrations, or with GPUQ_AUTO_MIGRATE=0 check there are none.

    On failure print what to do and return False.
    """
    from sqlalchemy.exc import OperationalError

    from gpuq.store import migrate
    from gpuq.store.db import make_engine

    engine = make_engine(settings)
    try:
        if settings.auto_migrate:
            migrate.upgrade(engine)
        elif not migrate.is_current(engine):
            print(
                "gpuq: the database schema is not up to date and GPUQ_AUTO_MIGRATE=0: "
                "run `gpuq db upgrade` (or `python -m gpuq db upgrade`) first.",
                file=sys.stderr,
            )
            return False
    except OperationalError as exc:
        print(
            f"gpuq: cannot reach the database ({_redact(settings.sqlalchemy_url)}): {exc.orig}\n"
            "gpuq: is PostgreSQL running? Check with `pg_isready`, and check DATABASE_URL.",
            file=sys.stderr,
        )
        return False
    finally:
        engine.dispose()
    return True


def check_redis(settings: Settings) -> None:
    if settings.embedded:
        return
    from gpuq.store.redis import make_client

    client = make_client(settings)
    try:
        client.ping()
    except Exception as exc:
        print(
            f"gpuq: Redis at {_redact(settings.redis_url)} is not answering ({type(exc).__name__}); "
            "serving degraded: leaderboard from the database, rate limits per worker. "
            "Check with `redis-cli ping`.",
            file=sys.stderr,
        )
    finally:
        client.close()


def gunicorn_options(host: str, port: int, workers: int, settings: Settings) -> dict[str, Any]:
    """gunicorn's settings for serving `settings` on host:port."""
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gpuq.server.GpuqWorker",
        "worker_connections": settings.streams_per_worker + API_HEADROOM,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "preload_app": False,
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": "gpuq.server.GpuqLogger",
        "accesslog": None,  # gpuq.api.observe writes the access lines
        "child_exit": child_exit,
        "proc_name": "gpuq",
        # Several servers may share a host (tests, blue/green); nothing here uses the control socket.
        "control_socket_disable": True,
    }


def main(argv: list[str] | None = None, prog: str = "python app.py") -> int:
    """Serve until stopped; returns the exit status. The caller has patched the standard
    library for gevent (app.py, `gpuq serve`)."""
    load_dotenv(".env")  # real environment variables win over .env
    environ = dict(os.environ)
    args = parse_args(argv, environ, prog)
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        print(f"gpuq: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format)
    workers = worker_count(args.workers, settings)
    if settings.embedded and args.workers not in (None, 1):
        log.warning("embedded mode runs one worker, not %s (set REDIS_URL for more)", args.workers)
    metrics_dir, master = prepare_metrics_dir(workers, environ), os.getpid()
    try:
        if not prepare_database(settings):
            return 1
        check_redis(settings)
        serve(settings, args, workers)
    finally:
        remove_metrics_dir(metrics_dir, environ, master)
    return 0


def serve(settings: Settings, args: argparse.Namespace, workers: int) -> None:
    """Say what is served where, then run gunicorn until it stops."""
    log.info("%s", describe(settings))
    shown_host = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::1", "::") else args.host
    log.info("serving on http://%s:%s with %d worker(s)", args.host, args.port, workers)
    log.info("live board at http://%s:%s/board", shown_host, args.port)
    options = gunicorn_options(args.host, args.port, workers, settings)
    GpuqServer(settings, options).run()
