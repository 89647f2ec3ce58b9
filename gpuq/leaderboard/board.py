"""The leaderboard's types: an entry, a page, and what every implementation offers.

The order and the membership of the views are decided in gpuq.leaderboard.rule;
`gpuq.leaderboard.query.DatabaseLeaderboard` (the database itself) and
`gpuq.leaderboard.index.RedisLeaderboard` (sorted sets, rebuilt from the
database) give the same ranking, which a test proves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Protocol

from gpuq.leaderboard.rule import DEFAULT_VIEW


@dataclasses.dataclass(frozen=True)
class Entry:
    submission_id: int
    score: Decimal
    submitted_at: dt.datetime
    participant: str | None = None
    """The participant's name; None for an anonymous submission."""
    measured: bool = False
    """Whether the server derived its metrics from a run's evidence (gpuq.evidence)."""


@dataclasses.dataclass(frozen=True)
class Page:
    entries: list[Entry]
    total: int
    version: bytes | None = None
    """The index version this page was read at; None when read from the database."""


class Leaderboard(Protocol):
    def add(self, entry: Entry) -> int | None:
        """Index an accepted, ranked submission; return its rank in view `all` when cheaply known."""

    def page(self, offset: int, limit: int, view: str = DEFAULT_VIEW) -> Page:
        """Entries ranked offset+1 .. offset+limit in `view`, and the view's total count."""

    def version(self) -> bytes | None:
        """An opaque value that changes whenever the ranking may have changed, or None
        when there is none to offer (then pages must not be cached)."""

    def rank(self, entry: Entry, view: str = "all") -> int:
        """The 1-based rank of a stored, ranked submission in `view` (in `best` it must lead)."""

    def refresh(self) -> None:
        """Bring the whole index in line with the database after a rescoring."""

    def reindex(self, *, submission_id: int | None = None, participant_id: int | None = None) -> None:
        """Bring one submission's places (with all its participant's submissions: their
        best entry may change), or one participant's, in line with the database after a
        moderation."""
