"""gpuq-agent's parts without a server: the backends, the sampler and runner, the HTTP
client's retries (against a real local HTTP server), the key file."""

from __future__ import annotations

import json
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gpuq_agent import backends, cli, measure
from gpuq_agent.client import ApiError, Client


class Ticking:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_fake_gpu_integrates_its_power_into_the_energy_counter():
    clock = Ticking()
    device = backends.FakeDevice(power_w=300.0, monotonic=clock)
    first = device.sample()
    clock.now += 2.0
    second = device.sample()
    assert second["energy_j"] - first["energy_j"] == pytest.approx(600.0)
    assert set(first) == set(backends.FIELDS)


def test_unsupported_fields_are_none_never_invented():
    device = backends.FakeDevice(unsupported=("energy_j", "throttle_reasons"))
    sample = device.sample()
    assert sample["energy_j"] is None and sample["throttle_reasons"] is None
    assert sample["power_w"] is not None


def test_a_recorded_trace_replays_in_order_then_holds(tmp_path):
    trace = tmp_path / "trace.json"
    trace.write_text(
        json.dumps(
            {
                "identity": {"name": "Recorded", "uuid": "GPU-r", "power_limit_w": 300},
                "samples": [{"gpu_util": 10, "t": 0}, {"gpu_util": 20, "t": 0.1}],
            }
        )
    )
    device = backends.open_device(f"replay:{trace}", 0)
    assert device.identity()["name"] == "Recorded"
    assert [device.sample()["gpu_util"] for _ in range(3)] == [10, 20, 20]


def test_an_unreadable_trace_or_backend_is_a_clear_error(tmp_path):
    with pytest.raises(backends.BackendError, match="cannot read the trace"):
        backends.open_device(f"replay:{tmp_path / 'missing.json'}", 0)
    with pytest.raises(backends.BackendError, match="unknown backend"):
        backends.open_device("cuda", 0)


def test_nvml_opens_a_gpu_or_says_why_not():
    try:
        device = backends.open_device("nvml", 0)
    except backends.BackendError as exc:
        assert "NVML" in str(exc)
    else:  # a machine with an NVIDIA GPU
        assert device.identity()["uuid"].startswith("GPU-")
        device.close()


def test_a_run_samples_at_the_rate_and_reads_the_result_line(tmp_path):
    script = "import time; time.sleep(0.5); print('GPUQ_RESULT accuracy=91.25')"
    measured = measure.run(
        [sys.executable, "-c", script], backends.FakeDevice(), 20.0, {"GPUQ_RUN_SEED": "1"}
    )
    assert measured.exit_status == 0 and measured.accuracy == 91.25
    t = measured.samples["t"]
    assert t == sorted(t) and t[0] < 0.05
    assert abs(len(t) - measured.wall_seconds * 20) <= 3  # one per 1/20 s, on deadlines
    assert measured.unsupported == []


def test_the_result_file_wins_over_the_result_line_and_the_exit_status_is_kept():
    script = (
        "import json, os, sys; json.dump({'accuracy': 77.5}, open(os.environ['GPUQ_RESULT_FILE'], 'w'));"
        "print('GPUQ_RESULT accuracy=10'); sys.exit(3)"
    )
    measured = measure.run([sys.executable, "-c", script], backends.FakeDevice(), 10.0, {})
    assert (measured.accuracy, measured.exit_status) == (77.5, 3)


class Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, headers, body) of the server's script."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        server = self.server
        server.seen.append(dict(self.headers))  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, headers, body = server.script.pop(0)  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST  # noqa: N815 - http.server's name

    def log_message(self, *args: object) -> None:
        pass


def _serve() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.seen, server.script = [], []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def scripted():
    server = _serve()
    yield server
    server.shutdown()
    server.server_close()


def test_a_post_is_retried_after_retry_after_with_the_same_idempotency_key(scripted):
    problem = json.dumps({"title": "Service Unavailable", "detail": "database down"}).encode()
    scripted.script += [
        (503, {"Retry-After": "7", "Content-Type": "application/problem+json"}, problem),
        (201, {"Content-Type": "application/json"}, b'{"submission_id": 1}'),
    ]
    waited: list[float] = []
    client = Client(f"http://127.0.0.1:{scripted.server_port}", "gpuq_key", sleep=waited.append)
    assert client.post("/submit_qualification", {"a": 1}) == {"submission_id": 1}
    assert waited == [7.0]
    keys = [headers["Idempotency-Key"] for headers in scripted.seen]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert scripted.seen[0]["Authorization"] == "Bearer gpuq_key"


def test_a_refusal_is_not_retried_and_says_what_the_server_said(scripted):
    problem = json.dumps({"title": "Conflict", "detail": "the run ticket was used", "code": "ticket_used"})
    scripted.script.append((409, {"Content-Type": "application/problem+json"}, problem.encode()))
    client = Client(f"http://127.0.0.1:{scripted.server_port}", None, sleep=lambda _s: None)
    with pytest.raises(ApiError) as refused:
        client.post("/runs/x/evidence", {})
    assert refused.value.status == 409 and refused.value.body["code"] == "ticket_used"
    assert "the run ticket was used" in str(refused.value)
    assert len(scripted.seen) == 1


def test_an_unreachable_server_is_retried_then_reported(scripted):
    port = scripted.server_port
    scripted.shutdown()
    scripted.server_close()
    waited: list[float] = []
    client = Client(f"http://127.0.0.1:{port}", None, attempts=3, sleep=waited.append)
    with pytest.raises(ApiError, match="could not be reached"):
        client.get("/quota")
    assert waited == [1.0, 2.0]


def test_login_keeps_the_key_readable_by_its_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("GPUQ_KEY", raising=False)
    path = cli.save_key("gpuq_secret")
    assert path == Path(tmp_path) / "gpuq" / "key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert cli.stored_key() == "gpuq_secret"
    monkeypatch.setenv("GPUQ_KEY", "gpuq_from_env")
    assert cli.stored_key() == "gpuq_from_env"


def test_the_agent_records_the_sample_fields_the_server_reads():
    from gpuq.api.schemas import SAMPLE_FIELDS, SamplesIn

    assert backends.FIELDS == SAMPLE_FIELDS
    assert set(SamplesIn.model_fields) == {"t", *backends.FIELDS}


def test_the_key_is_not_sent_on_to_a_redirects_target(scripted):
    elsewhere = _serve()
    try:
        target = f"http://localhost:{elsewhere.server_port}/quota"
        scripted.script.append((302, {"Location": target}, b""))
        elsewhere.script.append((200, {"Content-Type": "application/json"}, b"{}"))
        Client(f"http://127.0.0.1:{scripted.server_port}", "gpuq_secret").get("/quota")
        assert scripted.seen[0]["Authorization"] == "Bearer gpuq_secret"
        assert "Authorization" not in elsewhere.seen[0]
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()


def test_a_wait_longer_than_a_minute_is_reported_not_slept_through(scripted):
    problem = json.dumps({"title": "Too Many Requests", "detail": "submission limit exceeded"}).encode()
    scripted.script.append((429, {"Retry-After": "3600"}, problem))
    waited: list[float] = []
    client = Client(f"http://127.0.0.1:{scripted.server_port}", "k", sleep=waited.append)
    with pytest.raises(ApiError) as refused:
        client.post("/runs")
    assert refused.value.status == 429 and waited == []


def test_a_kept_run_is_sent_with_its_own_key_and_then_forgotten(scripted, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kept = cli.keep_run({"ticket_id": "t1", "nonce": "n"}, {"nonce": "n"})
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    record = json.loads(kept.read_text())
    scripted.script.append((201, {"Content-Type": "application/json"}, b'{"submission_id": 7, "score": 50}'))
    client = Client(f"http://127.0.0.1:{scripted.server_port}", "k", sleep=lambda _s: None)
    assert cli._send_kept(client, kept)["submission_id"] == 7
    assert scripted.seen[0]["Idempotency-Key"] == record["idempotency_key"]
    assert not kept.exists()


def test_commands_that_need_a_key_say_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("GPUQ_KEY", raising=False)
    assert cli.main(["--server", "http://127.0.0.1:9", "status"]) == 2
    assert "gpuq-agent login" in capsys.readouterr().err


def test_an_unreachable_server_is_exit_status_3(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUQ_KEY", "gpuq_k")
    monkeypatch.setattr("gpuq_agent.client.time.sleep", lambda _s: None)
    assert cli.main(["--server", "http://127.0.0.1:9", "quota"]) == 3
