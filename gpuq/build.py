"""What build this is: the package version and, where known, the source commit.

The commit comes from GPUQ_COMMIT (set it when building an image or deploying),
else from git when running from a checkout; it is None otherwise. Both are read
once per process.
"""

from __future__ import annotations

import functools
import os
import subprocess
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path


@functools.cache
def version() -> str:
    """The installed package's version ("0+unknown" when gpuq runs without being installed)."""
    try:
        return package_version("gpuq")
    except PackageNotFoundError:
        return "0+unknown"


@functools.cache
def commit() -> str | None:
    """The source commit: GPUQ_COMMIT, else the checkout's HEAD, else None."""
    given = os.environ.get("GPUQ_COMMIT", "").strip()
    if given:
        return given
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        found = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None
