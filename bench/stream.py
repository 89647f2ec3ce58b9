"""Live-stream benchmark: N connected stream clients, and the time from a submission to its
event on every client while submissions keep arriving.

Starts `python app.py` (gunicorn, gevent, 2 workers) on a throw-away PostgreSQL
database and the local Redis, opens N streams to /leaderboard/stream from
this process (gevent greenlets on raw sockets), then submits one result every
`--interval` seconds for `--seconds` seconds. For each submission it records
when the POST was sent and when its `submission` event reached each client;
it prints p50/p99/max of those delays, how many deliveries were missed, and
the latency of GET /leaderboard measured meanwhile (the JSON API must stay
responsive). Target: p99 under 1 s with 1,000 clients.

Usage: python bench/stream.py [--clients 1000] [--seconds 20] [--interval 0.2]
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpuq.config import Settings  # noqa: E402
from gpuq.store import migrate  # noqa: E402
from gpuq.store.db import make_engine  # noqa: E402
from tests import services  # noqa: E402


def stream_client(port: int, arrivals: dict[int, list[float]], ready: list[int], stop: list[bool]) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /leaderboard/stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    buffer = b""
    counted = False
    while not stop[0]:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            lines = block.decode().splitlines()
            if "event: snapshot" in lines and not counted:
                ready[0] += 1
                counted = True
            if "event: submission" in lines:
                data = next(line[5:] for line in lines if line.startswith("data:"))
                arrivals.setdefault(json.loads(data)["submission_id"], []).append(time.monotonic())
    sock.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    database = services.create_database()
    engine = make_engine(Settings(database_url=database))
    migrate.upgrade(engine)
    engine.dispose()
    prefix = f"gpuq_stream_bench_{os.getpid()}"
    port = services.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "REDIS_URL": services.REDIS_URL,
        "GPUQ_REDIS_PREFIX": prefix,
        "GPUQ_RATELIMIT_ENABLED": "0",
        "GPUQ_STREAMS_PER_ADDRESS": str(args.clients * 2),
        "GPUQ_STREAMS_PER_WORKER": str(args.clients * 2),
        "WEB_CONCURRENCY": str(args.workers),
        "PORT": str(port),
    }
    logs = ROOT / "bench" / "results"
    logs.mkdir(exist_ok=True)
    with open(logs / "stream-gpuq.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    arrivals: dict[int, list[float]] = {}
    sent: dict[int, float] = {}
    api_latency: list[float] = []
    ready, stop = [0], [False]
    try:
        services.wait_for_port(port, server, timeout=60)
        base = f"http://127.0.0.1:{port}"
        clients = [gevent.spawn(stream_client, port, arrivals, ready, stop) for _ in range(args.clients)]
        deadline = time.monotonic() + 60
        while ready[0] < args.clients and time.monotonic() < deadline:
            gevent.sleep(0.1)
        connected = ready[0]
        session = requests.Session()
        body = {"gpu_utilization": 90, "memory_usage": 85, "power_efficiency": 95, "completion_time": 30}
        end = time.monotonic() + args.seconds
        count = 0
        while time.monotonic() < end:
            started = time.monotonic()
            response = session.post(
                f"{base}/submit_qualification", json={**body, "accuracy": count % 100}, timeout=30
            )
            sent[response.json()["submission_id"]] = started
            probe = time.monotonic()
            session.get(f"{base}/leaderboard", timeout=30)
            api_latency.append(time.monotonic() - probe)
            count += 1
            gevent.sleep(max(0.0, args.interval - (time.monotonic() - started)))
        gevent.sleep(3)  # let the last events arrive
        stop[0] = True
        gevent.killall(clients, block=False)
    finally:
        server.terminate()
        server.wait(timeout=60)
        services.delete_prefix(services.REDIS_URL, prefix)
        services.drop_database(database)

    delays = [arrival - sent[sid] for sid, times in arrivals.items() if sid in sent for arrival in times]
    expected = len(sent) * connected
    print(f"clients connected: {connected}/{args.clients}; submissions: {len(sent)}")
    print(f"deliveries: {len(delays)}/{expected} (missed {expected - len(delays)})")
    if delays:
        print(
            f"submission -> event on every client: p50 {statistics.median(delays) * 1000:.0f} ms, "
            f"p99 {percentile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
            "(target p99 < 1000 ms)"
        )
    if api_latency:
        print(
            f"GET /leaderboard meanwhile: p50 {statistics.median(api_latency) * 1000:.1f} ms, "
            f"p99 {percentile(api_latency, 0.99) * 1000:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
