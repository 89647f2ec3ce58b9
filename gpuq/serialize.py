"""JSON representations shared by the API and the live events.

Numbers stay numbers; times are UTC with a Z.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from gpuq.clock import iso_z
from gpuq.leaderboard import Entry
from gpuq.participants import Member, prefix_of
from gpuq.scoring import METRICS, Profile
from gpuq.submissions.store import StoredSubmission


def number(value: Decimal) -> int | float:
    """A Decimal as a JSON number. Our values have at most 12 significant digits, which a
    double's shortest repr reproduces exactly (87.95 prints as 87.95)."""
    return int(value) if value == value.to_integral_value() else float(value)


def breakdown(submission: StoredSubmission, profile: Profile | None) -> dict[str, dict[str, Any]]:
    """Per metric: the value submitted, its weight (points out of 100) and the points earned."""
    result: dict[str, dict[str, Any]] = {}
    for name in METRICS:
        item: dict[str, Any] = {
            "value": number(submission.metrics[name]),
            "points": number(submission.points[name]),
        }
        if profile is not None:
            item["weight"] = number(profile.max_points(name))
        result[name] = item
    return result


def entry(rank: int, item: Entry) -> dict[str, Any]:
    return {
        "rank": rank,
        "submission_id": item.submission_id,
        "participant": item.participant,
        "score": number(item.score),
        "submitted_at": iso_z(item.submitted_at),
        "provenance": "measured" if item.measured else "self-reported",
    }


def issued(member: Member, key: str, moment: dt.datetime) -> dict[str, Any]:
    """The answer that carries a new API key (the only time it is ever shown)."""
    return {
        "name": member.name,
        "is_admin": member.is_admin,
        "api_key": key,
        "key_prefix": prefix_of(key),
        "created_at": iso_z(moment),
    }


def key_change(member: Member, key: str | None, revoked: int, moment: dt.datetime) -> dict[str, Any]:
    """The answer to a key rotation (the new key) or revocation (how many were revoked)."""
    return issued(member, key, moment) if key is not None else {"name": member.name, "revoked": revoked}
