"""The ranking rule: the one place it is decided.

Order: the higher score first; between equal scores the earlier submission,
"earlier" meaning the smaller submission id (the database hands ids out in
arrival order). Rank 1 is the best.

Membership of the two views (disqualified submissions and participants are
in neither):

* `all`: every ranked submission (the `submissions.ranked` flag);
* `best` (the default): each participant's first submission in that order
  among their ranked ones (their best, the earliest on a tie), and every
  anonymous submission on its own (the `submissions.leads` flag).

Everything that orders or places submissions uses this module: the database
queries (`order`, `ahead_of`, `leader_place`), a participant's new submission
taking the lead (`outranks`), the Redis index (`composite_key`, whose integer
order is this order), rescoring, moderation, the slot line and the export.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func

VIEWS = ("best", "all")
DEFAULT_VIEW = "best"

ID_BITS = 39
"""Bits for the submission id in the composite key: ids up to about 5.5e11."""
MAX_ID = (1 << ID_BITS) - 1
CENTS = Decimal(100)


def sort_key(score: Decimal, submission_id: int) -> tuple[Decimal, int]:
    """The rule as a Python sort key: sorting ascending by it puts rank 1 first."""
    return -score, submission_id


def outranks(score: Decimal, submission_id: int, other_score: Decimal, other_id: int) -> bool:
    """Whether (score, submission_id) ranks above (other_score, other_id)."""
    return sort_key(score, submission_id) < sort_key(other_score, other_id)


def order(score: Any, submission_id: Any) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The rule as an SQL ORDER BY over a score and an id column (or any expressions)."""
    return score.desc(), submission_id.asc()


def ahead_of(
    score: Any, submission_id: Any, than_score: Decimal, than_id: int
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The rows ranked above (than_score, than_id), as two disjoint conditions: a higher
    score; the same score and a smaller id. Kept apart so that each can be answered by a
    range on a (score, id) index (their OR is a scan of the whole table on PostgreSQL)."""
    return score > than_score, and_(score == than_score, submission_id < than_id)


def leader_place(participant_id: Any, score: Any, submission_id: Any) -> ColumnElement[int]:
    """Each submission's place among its participant's (1: the one that leads in view best)."""
    return func.row_number().over(partition_by=participant_id, order_by=order(score, submission_id))


def composite_key(score: Decimal, submission_id: int) -> int:
    """An integer that sorts like the rule under ZREVRANGE and stays below 2**53.

    score (0.00-100.00) in cents takes the high 14 bits; the low 39 bits hold
    the id inverted, so that between equal scores the smaller id ranks higher.
    Doubles represent every such integer exactly. A larger key ranks higher.
    """
    if not 0 < submission_id <= MAX_ID:
        raise ValueError(f"submission id {submission_id} does not fit the composite key")
    cents = int(score * CENTS)
    return (cents << ID_BITS) | (MAX_ID - submission_id)


def from_composite(key: int) -> tuple[Decimal, int]:
    """Inverse of `composite_key`: (score, submission id)."""
    score = (Decimal(key >> ID_BITS) / CENTS).quantize(Decimal("0.01"))
    return score, MAX_ID - (key & MAX_ID)
