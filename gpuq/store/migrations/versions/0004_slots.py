"""The GPU slot pool: its policy, the slots and their leases.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from gpuq.store.types import ExactDecimal, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = sa.text("ended_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "slot_policy",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("lease_seconds", sa.Integer(), nullable=False),
        sa.Column("cooldown_seconds", sa.Integer(), nullable=False),
        sa.Column("claim_seconds", sa.Integer(), nullable=False),
        sa.Column("qualifying_score", ExactDecimal(5, 2), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_slot_policy_one_row")),
        sa.CheckConstraint(
            "lease_seconds > 0 AND cooldown_seconds >= 0 AND claim_seconds >= 0",
            name=op.f("ck_slot_policy_durations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slot_policy")),
    )
    op.create_table(
        "slots",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("draining", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_slots")),
    )
    op.create_table(
        "leases",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("slot_name", sa.String(length=32), nullable=False),
        sa.Column("participant_id", ID, nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("offered_at", UTCDateTime(), nullable=False),
        sa.Column("granted_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.CheckConstraint("state IN ('offered', 'held', 'ended')", name=op.f("ck_leases_state")),
        sa.CheckConstraint(
            "end_reason IS NULL OR end_reason IN ('expired', 'released', 'revoked', 'declined')",
            name=op.f("ck_leases_end_reason"),
        ),
        sa.CheckConstraint(
            "(state = 'ended') = (ended_at IS NOT NULL) AND (ended_at IS NULL) = (end_reason IS NULL)",
            name=op.f("ck_leases_ended"),
        ),
        sa.CheckConstraint("state <> 'held' OR granted_at IS NOT NULL", name=op.f("ck_leases_granted")),
        sa.ForeignKeyConstraint(["slot_name"], ["slots.name"], name=op.f("fk_leases_slot_name_slots")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_leases_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
    )
    for name, column in (
        ("uq_leases_live_slot", "slot_name"),
        ("uq_leases_live_participant", "participant_id"),
    ):
        op.create_index(name, "leases", [column], unique=True, postgresql_where=LIVE, sqlite_where=LIVE)
    op.create_index("ix_leases_participant_ended", "leases", ["participant_id", "ended_at"])
    op.create_index(
        "ix_leases_live_expires", "leases", ["expires_at"], postgresql_where=LIVE, sqlite_where=LIVE
    )


def downgrade() -> None:
    for name in (
        "ix_leases_live_expires",
        "ix_leases_participant_ended",
        "uq_leases_live_participant",
        "uq_leases_live_slot",
    ):
        op.drop_index(name, table_name="leases")
    op.drop_table("leases")
    op.drop_table("slots")
    op.drop_table("slot_policy")
