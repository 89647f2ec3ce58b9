"""gpuq-agent against a real server process (`python app.py`), with the fake GPU backend:
the whole path from the command line to a ranked, measured result, and a recorded trace
replayed into a second run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import ROOT, WORKED_EXAMPLE, http_register

AGENT = Path(sys.executable).parent / "gpuq-agent"  # the installed entry point
BENCHMARK = [sys.executable, str(ROOT / "bench" / "cpu_benchmark.py"), "--seconds", "2"]


def agent(base: str, key: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "GPUQ_SERVER": base, "GPUQ_KEY": key, "XDG_CONFIG_HOME": str(home)}
    return subprocess.run([str(AGENT), *args], env=env, capture_output=True, text=True, timeout=120)


def test_agent_run_measures_submits_and_ranks_a_benchmark(start_server, tmp_path):
    server = start_server(
        DATABASE_URL=f"sqlite:///{tmp_path / 'agent.sqlite3'}", GPUQ_ALLOW_TEST_BACKENDS="1"
    )
    key = http_register(server.base, "agent-user")
    trace = tmp_path / "trace.json"
    ran = agent(
        server.base,
        key,
        "--json",
        "run",
        "--backend",
        "fake",
        "--record-trace",
        str(trace),
        "--",
        *BENCHMARK,
        home=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout[ran.stdout.index("{") :])
    assert (answer["provenance"], answer["ranked"], answer["rank"]) == ("measured", True, 1)
    assert all(check["passed"] for check in answer["checks"]), answer["checks"]
    assert "classified" in ran.stdout  # the benchmark's own output is passed through
    stored = requests.get(f"{server.base}/submissions/{answer['submission_id']}", timeout=10).json()
    assert stored["gpu_model"] == "Fake GPU 80GB"
    assert 1.5 < stored["breakdown"]["completion_time"]["value"] < 30  # the run's measured time

    # Perfect numbers typed in are accepted as self-reported, and flagged in the answer.
    typed = {
        "gpu_utilization": 100,
        "memory_usage": 100,
        "power_efficiency": 100,
        "completion_time": 0.0001,
        "accuracy": 100,
    }
    typed_file = tmp_path / "typed.json"
    typed_file.write_text(json.dumps(typed))
    cheat_key = http_register(server.base, "typist")
    typed_run = agent(server.base, cheat_key, "submit", str(typed_file), home=tmp_path)
    assert typed_run.returncode == 0, typed_run.stderr
    assert "flag: all_maximum" in typed_run.stdout

    # The recorded trace replays into a second run, whose energy counter covers the first's.
    recorded = json.loads(trace.read_text())
    assert recorded["identity"]["name"] == "Fake GPU 80GB" and len(recorded["samples"]) >= 15
    again = agent(server.base, key, "run", "--backend", f"replay:{trace}", "--", *BENCHMARK, home=tmp_path)
    assert again.returncode == 1, again.stderr  # stored, not ranked
    assert "check failed: energy_reused" in again.stdout


def test_agent_commands_report_the_servers_refusals(start_server, tmp_path):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path / 'refusals.sqlite3'}")
    refused = agent(server.base, "gpuq_not_a_key", "status", home=tmp_path)
    assert refused.returncode == 1
    assert "401" in refused.stderr and "not valid" in refused.stderr
    key = http_register(server.base, "quota-user")
    login = agent(server.base, key, "login", "--key", key, home=tmp_path)
    assert login.returncode == 0 and "logged in as quota-user" in login.stdout
    assert (tmp_path / "gpuq" / "key").read_text().strip() == key
    example = tmp_path / "example.json"
    example.write_text(json.dumps(WORKED_EXAMPLE))
    submitted = agent(server.base, key, "--json", "submit", str(example), home=tmp_path)
    assert json.loads(submitted.stdout)["score"] == 87.95
    quota = agent(server.base, key, "quota", home=tmp_path)
    assert quota.returncode == 0 and "participant: 9 of" in quota.stdout
    missing = agent(server.base, key, "run", "--backend", "fake", home=tmp_path)
    assert missing.returncode == 2 and "give the benchmark command" in missing.stderr


def test_agent_watch_accepts_the_slot_offered_to_its_participant(start_server, tmp_path):
    server = start_server(
        DATABASE_URL=f"sqlite:///{tmp_path / 'watch.sqlite3'}",
        GPUQ_SLOTS="gpu-0",
        GPUQ_SLOT_CLAIM_MINUTES="5",
    )
    key = http_register(server.base, "watcher")
    env = {
        "PATH": "/usr/bin:/bin",
        "GPUQ_SERVER": server.base,
        "GPUQ_KEY": key,
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    watching = subprocess.Popen(
        [str(AGENT), "watch", "--accept", "--once"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watching.stdout is not None
        first = watching.stdout.readline()  # blocks until the agent has its stream's snapshot
        assert first.startswith("watching the live stream as watcher"), first + watching.stderr.read()
        submitted = requests.post(
            f"{server.base}/submit_qualification",
            json=WORKED_EXAMPLE,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert submitted.status_code == 201
        out, err = watching.communicate(timeout=60)
    finally:
        if watching.poll() is None:
            watching.kill()
            watching.communicate()
    assert watching.returncode == 0, err
    assert "slot gpu-0 is offered to you" in out and "slot gpu-0: accepted" in out
    slot = requests.get(f"{server.base}/slots", timeout=10).json()["slots"][0]
    assert (slot["name"], slot["state"], slot["holder"]) == ("gpu-0", "held", "watcher")
