"""Typed handles on the tables, for SQLAlchemy Core statements.

`Model.__table__` is typed as a generic FromClause, which `insert`, `update`
and `delete` do not accept; these are the same objects as `Table`s. The hot
paths use Core on a Connection, not the ORM (see gpuq.submissions.store).
"""

from __future__ import annotations

from sqlalchemy import Table

from gpuq.store import models


def table_of(model: type[models.Base]) -> Table:
    """The model's table, as a Table."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


SCORING_PROFILES = table_of(models.ScoringProfile)
PARTICIPANTS = table_of(models.Participant)
API_KEYS = table_of(models.ApiKey)
AUDIT_EVENTS = table_of(models.AuditEvent)
SUBMISSIONS = table_of(models.Submission)
SCORE_HISTORY = table_of(models.ScoreHistory)
IDEMPOTENCY_KEYS = table_of(models.IdempotencyKey)
SLOT_POLICY = table_of(models.SlotPolicy)
SLOTS = table_of(models.Slot)
LEASES = table_of(models.Lease)
RUN_TICKETS = table_of(models.RunTicket)
EVIDENCE = table_of(models.Evidence)
RESULT_POLICY = table_of(models.ResultPolicy)
