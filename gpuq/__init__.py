"""gpuq: the GPU Qualification Scoring API.

`create_app` is imported on first use, so that `gpuq serve` can patch the standard
library for gevent before Flask, SQLAlchemy or redis-py are imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpuq.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from gpuq.app import create_app

        return create_app
    raise AttributeError(f"module 'gpuq' has no attribute {name!r}")
