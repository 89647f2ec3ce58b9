"""Probes for orchestrators: /livez (the process), /readyz (database reachable and migrated,
not draining), and the build in GET /."""

from __future__ import annotations

import subprocess
from importlib.metadata import version
from pathlib import Path

from gpuq import create_app
from gpuq.app import runtime_of
from gpuq.config import Settings

ROOT = Path(__file__).resolve().parent.parent.parent


def test_a_migrated_service_is_live_and_ready_and_no_probe_is_cached(client):
    for path in ("/livez", "/readyz"):
        response = client.get(path)
        assert (response.status_code, response.get_json()) == (200, {"status": "ok"})
        assert response.headers["Cache-Control"] == "no-store"


def test_a_draining_worker_is_live_but_not_ready(app, client):
    runtime_of(app).draining.set()  # what the worker does on SIGTERM
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.get_json()["reason"].startswith("draining")
    assert client.get("/livez").status_code == 200


def test_a_database_without_the_migrations_is_not_ready(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'new.sqlite3'}"))
    try:
        answer = app.test_client().get("/readyz")
        assert answer.status_code == 503 and answer.get_json()["reason"].startswith("migrations")
        assert app.test_client().get("/livez").status_code == 200
    finally:
        runtime_of(app).database.engine.dispose()


def test_health_names_the_version_and_the_commit(client):
    body = client.get("/").get_json()
    assert body["version"] == version("gpuq")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert body["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
