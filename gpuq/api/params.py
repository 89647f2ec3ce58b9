"""Query parameters, read strictly: a bad value is a 400 naming the parameter."""

from __future__ import annotations

from collections.abc import Sequence

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
