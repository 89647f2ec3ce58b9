"""Query parameters, read strictly: a bad value is a 400 naming the parameter."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from flask import request

from gpuq.errors import FieldError, InvalidInput


def int_param(name: str, default: int, low: int, high: int) -> int:
    """A whole number from `low` to `high` (ASCII digits only), `default` when absent."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidInput(
            f"query parameter {name} must be a whole number from {low} to {high}",
            [FieldError(name, f"must be a whole number from {low} to {high}, got {raw[:20]!r}")],
            status=400,
        )
    return int(raw)


def choice_param(name: str, choices: Sequence[str], default: str) -> str:
    """One of `choices`, `default` when absent."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw not in choices:
        allowed = ", ".join(choices)
        raise InvalidInput(
            f"query parameter {name} must be one of {allowed}",
            [FieldError(name, f"must be one of {allowed}, got {raw[:20]!r}")],
            status=400,
        )
    return raw


def text_param(name: str, max_length: int) -> str | None:
    """A non-empty text of at most `max_length` characters, None when absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not 1 <= len(raw) <= max_length:
        raise InvalidInput(
            f"query parameter {name} must be 1 to {max_length} characters",
            [FieldError(name, f"must be 1 to {max_length} characters, got {len(raw)}")],
            status=400,
        )
    return raw


def bool_param(name: str, default: bool = False) -> bool:
    """true/false (also 1/0), `default` when absent."""
    raw = request.args.get(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidInput(
        f"query parameter {name} must be true or false",
        [FieldError(name, f"must be true or false, got {raw[:20]!r}")],
        status=400,
    )


@dataclasses.dataclass(frozen=True)
class Paging:
    """A list's `limit` and `offset` query parameters: read by its handler and published in
    the OpenAPI document from this one definition."""

    default: int
    most: int
    max_offset: int = 1_000_000

    def read(self) -> tuple[int, int]:
        """(limit, offset) of this request; raises InvalidInput (400) naming a bad one."""
        return int_param("limit", self.default, 1, self.most), int_param("offset", 0, 0, self.max_offset)

    def openapi(self) -> list[dict[str, Any]]:
        bounds = (("limit", 1, self.most, self.default), ("offset", 0, self.max_offset, 0))
        return [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": low, "maximum": high, "default": default},
            }
            for name, low, high, default in bounds
        ]


LEADERBOARD = Paging(default=10, most=100)
HISTORY = Paging(default=20, most=100)
"""A participant's submissions; the slot leases."""
AUDIT = Paging(default=50, most=500, max_offset=10_000_000)
