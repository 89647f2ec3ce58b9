"""Load benchmark: gpuq against a bare Flask endpoint served the same way, in one run.

Starts `python app.py` on a throw-away PostgreSQL database and the local Redis
(with limits set high so the rate-limit code path still runs), and the bare
Flask app under gunicorn with the same worker class and count. Drives each
with wrk and prints req/s, p99 latency and the ratios to the bare endpoint.

Usage: python bench/run.py [--seconds 10] [--connections 32] [--workers 2]
Needs wrk (Debian package `wrk`), PostgreSQL and Redis (see tests/services.py for addresses).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from gpuq.config import Settings  # noqa: E402
from gpuq.store import migrate  # noqa: E402
from gpuq.store.db import make_engine  # noqa: E402
from tests import services  # noqa: E402


def wrk(
    url: str, seconds: int, connections: int, script: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * scale,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def start(command: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    services.wait_for_port(port, process, timeout=60)
    return process


EVIDENCE_PER_RUN = 3000
"""Prepared evidence bodies per run (each needs its own ticket); more than a run uses."""
EVIDENCE_RUN_SECONDS = 3.0
"""How long each prepared run lasted (31 samples at 10 per second)."""


def prepare_evidence(base: str, keys: list[str], count: int, path: Path) -> Path:
    """`count` tickets, each with the evidence of a different run, as lines for evidence.lua."""
    from tests.measured import evidence_for

    session = requests.Session()
    with path.open("w") as out:
        for i in range(count):
            key = keys[i % len(keys)]
            issued = session.post(f"{base}/runs", headers={"Authorization": f"Bearer {key}"}, timeout=10)
            ticket = issued.json()
            body = evidence_for(ticket, seconds=EVIDENCE_RUN_SECONDS, mem_used=60 * 2**30 + i)
            out.write(f"{key}\t{ticket['ticket_id']}\t{json.dumps(body, separators=(',', ':'))}\n")
    session.close()
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="measure this many times; report the median")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    database = services.create_database()
    engine = make_engine(Settings(database_url=database))
    migrate.upgrade(engine)
    engine.dispose()
    prefix = f"gpuq_bench_{os.getpid()}"
    logs = ROOT / "bench" / "results"
    logs.mkdir(exist_ok=True)
    gpuq_port, bare_port = services.free_port(), services.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "REDIS_URL": services.REDIS_URL,
        "GPUQ_REDIS_PREFIX": prefix,
        "GPUQ_SUBMIT_LIMIT": "100000000 per hour",
        "GPUQ_DAILY_LIMIT": "100000000 per day",
        "GPUQ_PARTICIPANT_LIMIT": "100000000 per hour",
        "WEB_CONCURRENCY": str(args.workers),
        "PORT": str(gpuq_port),
    }
    processes = []
    try:
        processes.append(start([sys.executable, "app.py"], env, gpuq_port, logs / "gpuq.log"))
        bare = [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "-w",
            str(args.workers),
            "--worker-connections",
            "2000",
            "--no-control-socket",
            "-b",
            f"127.0.0.1:{bare_port}",
            "--chdir",
            str(ROOT / "bench"),
            "bare_app:app",
        ]
        processes.append(start(bare, dict(os.environ), bare_port, logs / "bare.log"))

        # Warm up both, and give the leaderboard something to rank.
        wrk(f"http://127.0.0.1:{bare_port}/", 2, args.connections)
        wrk(f"http://127.0.0.1:{gpuq_port}", 3, args.connections, ROOT / "bench" / "submit.lua")
        # Participants submitting with their keys (one per connection, so that their row
        # locks do not serialise the load).
        register = f"http://127.0.0.1:{gpuq_port}/participants"
        keys = [
            requests.post(register, json={"name": f"bench{i}"}, timeout=10).json()["api_key"]
            for i in range(args.connections)
        ]
        keyed = {**os.environ, "GPUQ_BENCH_KEYS": ",".join(keys)}  # for submit.lua

        base = f"http://127.0.0.1:{gpuq_port}"
        evidence_files = [
            prepare_evidence(base, keys, EVIDENCE_PER_RUN, logs / f"evidence{i}.tsv")
            for i in range(args.runs)
        ]
        time.sleep(EVIDENCE_RUN_SECONDS)  # the prepared runs "took" this long after their tickets

        runs = []
        for number in range(args.runs):
            runs.append(
                {
                    "bare": wrk(f"http://127.0.0.1:{bare_port}/", args.seconds, args.connections),
                    "submit": wrk(
                        f"http://127.0.0.1:{gpuq_port}",
                        args.seconds,
                        args.connections,
                        ROOT / "bench" / "submit.lua",
                    ),
                    "leaderboard": wrk(
                        f"http://127.0.0.1:{gpuq_port}/leaderboard", args.seconds, args.connections
                    ),
                    "submit_keyed": wrk(
                        f"http://127.0.0.1:{gpuq_port}",
                        args.seconds,
                        args.connections,
                        ROOT / "bench" / "submit.lua",
                        keyed,
                    ),
                    "evidence": wrk(
                        f"http://127.0.0.1:{gpuq_port}",
                        args.seconds,
                        args.connections,
                        ROOT / "bench" / "evidence.lua",
                        {**os.environ, "GPUQ_BENCH_EVIDENCE": str(evidence_files[number])},
                    ),
                }
            )
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        services.delete_prefix(services.REDIS_URL, prefix)
        services.drop_database(database)

    labels = {
        "bare": "bare Flask GET /",
        "submit": "POST /submit_qualification",
        "leaderboard": "GET /leaderboard",
        "submit_keyed": "POST /submit_qualification + key",
        "evidence": "POST /runs/<id>/evidence",
    }
    ratios: dict[str, list[float]] = {name: [] for name in labels}
    print(f"{'run':<4}{'endpoint':<28}{'req/s':>10}{'p99 ms':>10}{'ratio':>8}{'non-2xx':>9}")
    for number, results in enumerate(runs, 1):
        bare_rps = results["bare"]["rps"]
        for name, label in labels.items():
            r = results[name]
            ratios[name].append(r["rps"] / bare_rps)
            print(
                f"{number:<4}{label:<28}{r['rps']:>10.0f}{r['p99_ms']:>10.1f}"
                f"{r['rps'] / bare_rps:>8.2f}{r['non_2xx']:>9}"
            )
            if r["socket_errors"]:
                print(f"    {r['socket_errors']}")
    print(
        f"median ratio: submit {statistics.median(ratios['submit']):.2f} (target 0.35), "
        f"leaderboard {statistics.median(ratios['leaderboard']):.2f} (target 0.60), "
        f"submit with a key {statistics.median(ratios['submit_keyed']):.2f}, "
        f"measured evidence {statistics.median(ratios['evidence']):.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
