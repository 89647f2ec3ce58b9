"""Leaderboards per GPU model: the ranking rule (gpuq.leaderboard.rule) over the ranked
results on one model: the model a measured result's evidence names, or the one a
self-reported result declares (its entries say `self-reported`).

Answered from the database (index ix_submissions_gpu_ranked), never from the Redis
index, which holds the whole board only. In view `best` each participant appears once,
with their best result on that model (which may not be their best overall).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, distinct, func, or_, select

from gpuq.leaderboard import rule
from gpuq.leaderboard.board import Entry, Page
from gpuq.store import tables

TABLE = tables.SUBMISSIONS
PARTICIPANTS = tables.PARTICIPANTS
MAX_MODEL_LENGTH = 128
MEASURED = (TABLE.c.provenance == "measured").label("measured")


class GpuBoards:
    def __init__(self, connect: Callable[[], Connection]):
        self._connect = connect

    def page(self, model: str, offset: int, limit: int, view: str) -> Page:
        """One page of the board of GPU `model` in `view` ("best" or "all")."""
        on_model = and_(TABLE.c.ranked, TABLE.c.gpu_model == model)
        if view == "all":
            rows: Any = (
                select(TABLE.c.id, TABLE.c.score, TABLE.c.created_at, TABLE.c.participant_id, MEASURED)
                .where(on_model)
                .subquery()
            )
            kept: Any = True
        else:
            place = rule.leader_place(TABLE.c.participant_id, TABLE.c.score, TABLE.c.id).label("place")
            rows = (
                select(TABLE.c.id, TABLE.c.score, TABLE.c.created_at, TABLE.c.participant_id, MEASURED, place)
                .where(on_model)
                .subquery()
            )
            kept = or_(rows.c.participant_id.is_(None), rows.c.place == 1)
        entries = (
            select(rows.c.id, rows.c.score, rows.c.created_at, PARTICIPANTS.c.name, rows.c.measured)
            .outerjoin(PARTICIPANTS, PARTICIPANTS.c.id == rows.c.participant_id)
            .where(kept)
        )
        with self._connect() as connection:
            found = connection.execute(
                entries.order_by(*rule.order(rows.c.score, rows.c.id)).offset(offset).limit(limit)
            ).all()
            total = connection.scalar(select(func.count()).select_from(rows).where(kept)) or 0
        return Page(
            [Entry(row.id, row.score, row.created_at, row.name, bool(row.measured)) for row in found], total
        )

    def models(self) -> list[dict[str, Any]]:
        """Every GPU model with ranked results: how many, how many of them measured, from how
        many participants."""
        query = (
            select(
                TABLE.c.gpu_model,
                func.count(),
                func.count().filter(TABLE.c.provenance == "measured"),
                func.count(distinct(TABLE.c.participant_id)),
            )
            .where(TABLE.c.ranked, TABLE.c.gpu_model.is_not(None))
            .group_by(TABLE.c.gpu_model)
            .order_by(func.count().desc(), TABLE.c.gpu_model)
        )
        with self._connect() as connection:
            rows = connection.execute(query).all()
        return [
            {"model": model, "results": count, "measured": measured, "participants": people}
            for model, count, measured, people in rows
        ]
