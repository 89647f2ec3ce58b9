"""The handlers' one way to what the app runs on: `runtime()` (settings, stores, services)."""

from __future__ import annotations

from flask import current_app

from gpuq.runtime import Runtime

EXTENSION = "gpuq.runtime"


def runtime() -> Runtime:
    """The current app's Runtime (see gpuq.runtime)."""
    found: Runtime = current_app.extensions[EXTENSION]
    return found
