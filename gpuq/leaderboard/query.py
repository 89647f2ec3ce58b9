"""The leaderboard straight from the database: the embedded default, the fallback whenever
Redis fails, and the truth the Redis index is rebuilt from.

Indexed queries on `submissions` (partial indexes ix_submissions_ranked and
_leading), ordered by gpuq.leaderboard.rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import Connection, func, or_, select

from gpuq.leaderboard import rule
from gpuq.leaderboard.board import Entry, Page
from gpuq.leaderboard.rule import DEFAULT_VIEW
from gpuq.store import tables

TABLE = tables.SUBMISSIONS
PARTICIPANTS = tables.PARTICIPANTS
_FLAG = {"all": TABLE.c.ranked, "best": TABLE.c.leads}
_ENTRIES = select(
    TABLE.c.id, TABLE.c.score, TABLE.c.created_at, PARTICIPANTS.c.name, TABLE.c.provenance == "measured"
).outerjoin(PARTICIPANTS, PARTICIPANTS.c.id == TABLE.c.participant_id)
_COUNTS = select(func.count().filter(TABLE.c.ranked), func.count().filter(TABLE.c.leads))


class DatabaseLeaderboard:
    """Ranking straight from the database (partial indexes ix_submissions_ranked and _leading)."""

    def __init__(self, connect: Callable[[], Connection]):
        self._connect = connect

    def add(self, entry: Entry) -> int | None:
        return None  # the row itself is the index

    def version(self) -> bytes | None:
        return None

    def refresh(self) -> None:
        return None

    def reindex(self, *, submission_id: int | None = None, participant_id: int | None = None) -> None:
        return None

    def owned(
        self, *, submission_id: int | None = None, participant_id: int | None = None
    ) -> list[tuple[Entry, bool, bool]]:
        """(entry, ranked, leads) of a participant's submissions, or of one submission and,
        when it has a participant, all of theirs."""
        if participant_id is not None:
            mine = TABLE.c.participant_id == participant_id
        else:
            owner = select(TABLE.c.participant_id).where(TABLE.c.id == submission_id).scalar_subquery()
            mine = or_(TABLE.c.id == submission_id, TABLE.c.participant_id == owner)
        with self._connect() as connection:
            rows = connection.execute(_ENTRIES.add_columns(TABLE.c.ranked, TABLE.c.leads).where(mine)).all()
        return [(Entry(*row[:5]), row[5], row[6]) for row in rows]

    def page(self, offset: int, limit: int, view: str = DEFAULT_VIEW) -> Page:
        flag = _FLAG[view]
        with self._connect() as connection:
            rows = connection.execute(
                _ENTRIES.where(flag)
                .order_by(*rule.order(TABLE.c.score, TABLE.c.id))
                .offset(offset)
                .limit(limit)
            ).all()
            total = connection.scalar(select(func.count()).where(flag)) or 0
        return Page([Entry(*row) for row in rows], total)

    def rank(self, entry: Entry, view: str = "all") -> int:
        # Two range counts on the view's partial index rather than one OR, which
        # PostgreSQL would answer with a scan of the whole table.
        flag = _FLAG[view]
        higher, earlier_tie = rule.ahead_of(TABLE.c.score, TABLE.c.id, entry.score, entry.submission_id)
        above = [select(func.count()).where(flag, c).scalar_subquery() for c in (higher, earlier_tie)]
        with self._connect() as connection:
            better = connection.scalar(select(above[0] + above[1]))
        return (better or 0) + 1

    def counts(self) -> tuple[int, int]:
        """How many submissions each view holds: (all, best)."""
        with self._connect() as connection:
            ranked, leading = connection.execute(_COUNTS).one()
        return ranked, leading

    def all_entries(self, after_id: int = 0, batch: int = 5000) -> Iterator[list[tuple[Entry, bool]]]:
        """Every ranked submission with id > after_id and whether it leads, a batch at a time
        (for rebuilding an index)."""
        last = after_id
        with self._connect() as connection:
            while rows := connection.execute(
                _ENTRIES.add_columns(TABLE.c.leads)
                .where(TABLE.c.ranked, TABLE.c.id > last)
                .order_by(TABLE.c.id)
                .limit(batch)
            ).all():
                yield [(Entry(*row[:5]), row[5]) for row in rows]
                last = rows[-1][0]
