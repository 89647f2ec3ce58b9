"""What the request hook (gpuq.api.observe: request id, request metrics, the access line)
costs on the request path, in process: GET /leaderboard through Flask's test client on
the embedded app, with and without the hook, interleaved.

Variants, each `--requests` requests, `--runs` times (median reported):

* without the hook: observe's functions taken out of the app's request hooks;
* with the hook, the access line made but not written (no handler: as under tests);
* with the hook and the JSON access line written to /dev/null (as the server writes it).

The variants take turns every 100 requests; CPU time of this process is measured, so that
waiting for a core on a shared machine does not count. Whole requests vary by tens of µs
from run to run on a shared machine, so the hook's two functions are also timed alone
(in one request context, 20,000 times), which is steadier.

Usage: python bench/observe_cost.py [--requests 2000] [--runs 5]
Needs nothing but the package (SQLite in a temporary directory).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, Response  # noqa: E402

from gpuq import create_app, logs  # noqa: E402
from gpuq.api import observe  # noqa: E402
from gpuq.config import Settings  # noqa: E402
from gpuq.store import migrate  # noqa: E402
from gpuq.store.db import get_db  # noqa: E402

BODY = {
    "gpu_utilization": 90,
    "memory_usage": 85,
    "power_efficiency": 95,
    "completion_time": 30,
    "accuracy": 98,
}


def build(workdir: str) -> Flask:
    app = create_app(Settings(database_url=f"sqlite:///{workdir}/gpuq.sqlite3", ratelimit_enabled=False))
    migrate.upgrade(get_db(app).engine)
    client = app.test_client()
    for accuracy in range(80, 100):
        assert client.post("/submit_qualification", json={**BODY, "accuracy": accuracy}).status_code == 201
    return app


def without_hook(app: Flask) -> Callable[[], None]:
    """Take the hook out; returns what puts it back."""
    saved = (list(app.before_request_funcs[None]), list(app.after_request_funcs[None]))
    app.before_request_funcs[None].remove(observe._start)
    app.after_request_funcs[None].remove(observe._finish)

    def restore() -> None:
        app.before_request_funcs[None][:] = saved[0]
        app.after_request_funcs[None][:] = saved[1]

    return restore


def run(app: Flask, requests: int) -> float:
    """CPU µs per request: this process's CPU time, so that time spent waiting for the
    cores (the machine is shared) does not count."""
    client = app.test_client()
    started = time.process_time()
    for _ in range(requests):
        client.get("/leaderboard")
    return (time.process_time() - started) / requests * 1e6


def hook_alone(app: Flask, times: int = 20_000) -> float:
    """µs for one _start and one _finish, in a request context for GET /leaderboard."""
    with app.test_request_context("/leaderboard"):
        response = Response(b"{}", mimetype="application/json")

        def both() -> None:
            observe._start()
            observe._finish(response)

        both()
        return timeit.timeit(both, number=times) / times * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, open(os.devnull, "w") as sink:
        logging.disable(logging.WARNING)  # the set-up's lines (migrations) are not measured
        app = build(workdir)
        logging.disable(logging.NOTSET)
        root = logging.getLogger()
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logs.JsonFormatter())
        variants: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
            "without the hook": (lambda: restore.append(without_hook(app)), lambda: restore.pop()()),
            "hook, line not written": (lambda: None, lambda: None),
            "hook, JSON line": (lambda: root.addHandler(handler), lambda: root.removeHandler(handler)),
        }
        restore: list[Callable[[], None]] = []
        results: dict[str, list[float]] = {name: [] for name in variants}
        run(app, 200)  # warm up
        block = 100  # the variants take turns every 100 requests, so drift spreads over all
        for _ in range(args.runs):
            spent = dict.fromkeys(variants, 0.0)
            for _ in range(args.requests // block):
                for name, (enter, leave) in variants.items():
                    enter()
                    spent[name] += run(app, block)
                    leave()
            for name in variants:
                results[name].append(spent[name] / (args.requests // block))
        alone = [hook_alone(app) for _ in range(3)]
        root.addHandler(handler)
        alone_written = [hook_alone(app) for _ in range(3)]
        root.removeHandler(handler)
        base = statistics.median(results["without the hook"])
        for name, micros in results.items():
            median = statistics.median(micros)
            runs = ", ".join(f"{m:.0f}" for m in micros)
            print(f"{name:24} {median:7.1f} CPU µs/request ({median - base:+6.1f}; runs: {runs})")
        for name, micros in (("line not written", alone), ("JSON line", alone_written)):
            runs = ", ".join(f"{m:.1f}" for m in micros)
            print(f"the hook alone, {name}: {statistics.median(micros):.1f} µs (runs: {runs})")


if __name__ == "__main__":
    main()
