"""HTML pages and their static assets (served by the service itself, no CDN)."""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
