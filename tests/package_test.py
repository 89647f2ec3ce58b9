"""The installable package: a wheel built from the repository carries everything the service
needs (templates, static files, migrations, the Lua script), and `gpuq serve` runs it from
any directory; the declared dependencies and the pinned requirements agree.

The wheel is installed without dependencies into a directory of its own, put first on
the path; the dependencies come from this interpreter. (A fresh virtual environment with
`pip install <repo>` from PyPI is the same check with the network; see the README.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement

from tests.conftest import WORKED_EXAMPLE
from tests.services import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(r.name): r for r in map(Requirement, project["dependencies"])}


def pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements-runtime.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (version,) = [spec.version for spec in requirement.specifier if spec.operator == "=="]
            pins[_normal(requirement.name)] = version
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_runtime_dependency_is_declared_and_pinned_inside_its_range():
    ranges, pins = declared(), pinned()
    assert set(ranges) == set(pins)
    for name, requirement in ranges.items():
        assert requirement.specifier.contains(pins[name]), (name, pins[name], str(requirement.specifier))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from the repository, installed (without dependencies) into a directory."""
    wheels, target = tmp_path_factory.mktemp("wheels"), tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT], check=True)
    (wheel,) = wheels.glob("gpuq-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)
    return target


def test_an_installed_wheel_serves_the_board_and_the_docs_and_scores_from_another_directory(
    installed: Path, tmp_path: Path
):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUQ_", "DATABASE_URL", "REDIS_URL"))}
    env["PYTHONPATH"] = str(installed)
    where = subprocess.run(
        [sys.executable, "-c", "import gpuq; print(gpuq.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    assert Path(where.stdout.decode().strip()).is_relative_to(installed)
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gpuq", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, server, timeout=60)
        base = f"http://127.0.0.1:{port}"
        board = requests.get(f"{base}/board", timeout=10)
        assert board.status_code == 200 and "<html" in board.text.lower()
        assert requests.get(f"{base}/static/board.js", timeout=10).status_code == 200
        docs = requests.get(f"{base}/docs", timeout=10)
        assert docs.status_code == 200
        assert requests.get(f"{base}/static/swagger-ui/swagger-ui-bundle.js", timeout=10).status_code == 200
        answer = requests.post(f"{base}/submit_qualification", json=WORKED_EXAMPLE, timeout=10)
        assert answer.status_code == 201 and answer.json()["score"] == 87.95
        # The embedded default migrated a new database under the directory it was started from.
        assert (tmp_path / "instance" / "gpuq.sqlite3").is_file()
    finally:
        server.terminate()
        server.wait(timeout=30)
