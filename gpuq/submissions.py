"""Accepting a submission: score it and store it (the caller commits)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy.orm import Session

from gpuq.clock import to_millis
from gpuq.errors import NotFound
from gpuq.scoring import METRICS, Profile, score
from gpuq.store.models import Submission


def record(
    session: Session,
    metrics: Mapping[str, Decimal],
    profile: Profile,
    profile_version: int,
    client_address: str,
    now: dt.datetime,
) -> Submission:
    """Score validated `metrics` and add the row; flushes (so the id is set), never commits."""
    result = score(metrics, profile)
    submission = Submission(
        **{name: metrics[name] for name in METRICS},
        **{f"points_{name}": result.points[name] for name in METRICS},
        score=result.total,
        profile_version=profile_version,
        client_address=client_address[:64],
        created_at=to_millis(now),
    )
    session.add(submission)
    session.flush()
    return submission


def get(session: Session, submission_id: int) -> Submission:
    """The stored submission; raises NotFound."""
    submission = session.get(Submission, submission_id)
    if submission is None:
        raise NotFound(f"no submission with id {submission_id}")
    return submission
