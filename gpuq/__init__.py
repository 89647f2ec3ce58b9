"""gpuq: the GPU Qualification Scoring API."""

from gpuq.app import create_app

__all__ = ["create_app"]
