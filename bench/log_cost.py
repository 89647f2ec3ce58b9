"""What one access-log line costs: the standard library with gpuq.logs.JsonFormatter against
structlog's JSON renderer, for the same fields, written to /dev/null (one write and flush
per line, as on stdout).

Usage: python bench/log_cost.py [--lines 50000] [--runs 5]
structlog is not a dependency of gpuq; this script measures it only when it is installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpuq import logs  # noqa: E402

FIELDS = {
    "event": "request",
    "method": "GET",
    "route": "/leaderboard",
    "path": "/leaderboard",
    "status": 200,
    "duration_ms": 1.234,
    "address": "127.0.0.1",
    "participant": "alice",
}


def stdlib(lines: int, sink: object) -> float:
    logger = logging.getLogger("bench.access")
    logger.propagate = False
    handler = logging.StreamHandler(sink)  # type: ignore[arg-type]
    handler.setFormatter(logs.JsonFormatter())
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    token = logs.REQUEST_ID.set("0123456789abcdef0123456789abcdef")
    started = time.perf_counter()
    for _ in range(lines):
        logger.info("GET /leaderboard 200", extra=FIELDS)
    elapsed = time.perf_counter() - started
    logs.REQUEST_ID.reset(token)
    return elapsed


def with_structlog(lines: int, sink: object) -> float:
    import structlog

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(sink),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    logger = structlog.get_logger("bench.access")
    structlog.contextvars.bind_contextvars(request_id="0123456789abcdef0123456789abcdef")
    started = time.perf_counter()
    # structlog's message is its `event` key: the same field goes under another name.
    fields = {("kind" if key == "event" else key): value for key, value in FIELDS.items()}
    for _ in range(lines):
        logger.info("GET /leaderboard 200", **fields)
    return time.perf_counter() - started


def structlog_on_stdlib(lines: int, sink: object) -> float:
    """structlog as it would have to run to put gunicorn's and the libraries' lines in the
    same format: its processors, then the standard library's handler (ProcessorFormatter)."""
    import structlog

    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sink)  # type: ignore[arg-type]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=shared,
        )
    )
    backend = logging.getLogger("bench.structlog")
    backend.propagate = False
    backend.handlers = [handler]
    backend.setLevel(logging.INFO)
    logger = structlog.get_logger("bench.structlog")
    structlog.contextvars.bind_contextvars(request_id="0123456789abcdef0123456789abcdef")
    fields = {("kind" if key == "event" else key): value for key, value in FIELDS.items()}
    started = time.perf_counter()
    for _ in range(lines):
        logger.info("GET /leaderboard 200", **fields)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    candidates = {"stdlib + gpuq.logs.JsonFormatter": stdlib}
    try:
        import structlog  # noqa: F401
    except ImportError:
        print("structlog is not installed: measuring the standard library only")
    else:
        candidates["structlog JSONRenderer"] = with_structlog
        candidates["structlog on stdlib logging"] = structlog_on_stdlib
    with open(os.devnull, "w") as sink:
        for name, run in candidates.items():
            micros = [run(args.lines, sink) / args.lines * 1e6 for _ in range(args.runs)]
            runs = ", ".join(f"{m:.2f}" for m in micros)
            print(f"{name:34} {statistics.median(micros):6.2f} µs/line (runs: {runs})")


if __name__ == "__main__":
    main()
