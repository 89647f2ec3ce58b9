"""Participants, API keys, moderation, the active scoring profile, the audit trail.

Existing submissions stay anonymous and ranked; the newest scoring profile
becomes the active one, and its weights are rewritten from points out of 100
(25) to fractions (0.25), which scores identically.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import json
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from gpuq.store.types import ExactDecimal, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
METRICS = ("gpu_utilization", "memory_usage", "power_efficiency", "completion_time", "accuracy")


def _rewrite_weights(scale: Decimal) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT version, parameters FROM scoring_profiles")).all()
    for version, parameters in rows:
        values = json.loads(parameters)
        for metric in METRICS:
            weight = (Decimal(values[f"weight_{metric}"]) * scale).normalize()
            values[f"weight_{metric}"] = str(
                weight.quantize(Decimal(1)) if weight == weight.to_integral() else weight
            )
        connection.execute(
            sa.text("UPDATE scoring_profiles SET parameters = :p WHERE version = :v"),
            {"p": json.dumps(values, sort_keys=True, separators=(",", ":")), "v": version},
        )


def upgrade() -> None:
    op.create_table(
        "participants",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("name_key", sa.String(length=32), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("disqualified_at", UTCDateTime(), nullable=True),
        sa.Column("disqualify_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        sa.UniqueConstraint("name_key", name=op.f("uq_participants_name_key")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("participant_id", ID, nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_api_keys_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_api_keys_key_id")),
    )
    live = sa.text("revoked_at IS NULL")
    op.create_index(
        "uq_api_keys_live_participant",
        "api_keys",
        ["participant_id"],
        unique=True,
        postgresql_where=live,
        sqlite_where=live,
    )
    op.create_table(
        "audit_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )

    with op.batch_alter_table("scoring_profiles") as batch:
        batch.add_column(sa.Column("active", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute(
        "UPDATE scoring_profiles SET active = TRUE "
        "WHERE version = (SELECT max(version) FROM scoring_profiles)"
    )
    active = sa.text("active")
    op.create_index(
        "uq_scoring_profiles_active",
        "scoring_profiles",
        ["active"],
        unique=True,
        postgresql_where=active,
        sqlite_where=active,
    )
    _rewrite_weights(Decimal("0.01"))
    op.create_table(
        "score_history",
        sa.Column("submission_id", ID, nullable=False),
        sa.Column("replaced_by", sa.Integer(), nullable=False),
        sa.Column("profile_version", sa.Integer(), nullable=False),
        sa.Column("score", ExactDecimal(5, 2), nullable=False),
        sa.Column("leads", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("replaced_by", "submission_id", name=op.f("pk_score_history")),
    )

    op.drop_index("ix_submissions_ranking", table_name="submissions")
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("participant_id", ID, nullable=True))
        batch.add_column(sa.Column("disqualified_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("disqualify_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("ranked", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.add_column(sa.Column("leads", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.create_foreign_key(
            op.f("fk_submissions_participant_id_participants"), "participants", ["participant_id"], ["id"]
        )
    for name, flag in (("ix_submissions_ranked", "ranked"), ("ix_submissions_leading", "leads")):
        op.create_index(
            name,
            "submissions",
            [sa.text("score DESC"), "id"],
            postgresql_where=sa.text(flag),
            sqlite_where=sa.text(flag),
        )
    owned = sa.text("participant_id IS NOT NULL")  # anonymous rows (most of them) need no entry
    op.create_index(
        "ix_submissions_participant",
        "submissions",
        ["participant_id", sa.text("score DESC"), "id"],
        postgresql_where=owned,
        sqlite_where=owned,
    )


def downgrade() -> None:
    op.drop_index("ix_submissions_participant", table_name="submissions")
    op.drop_index("ix_submissions_leading", table_name="submissions")
    op.drop_index("ix_submissions_ranked", table_name="submissions")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(op.f("fk_submissions_participant_id_participants"), type_="foreignkey")
        for column in ("leads", "ranked", "disqualify_reason", "disqualified_at", "participant_id"):
            batch.drop_column(column)
    op.create_index("ix_submissions_ranking", "submissions", [sa.text("score DESC"), "id"])
    op.drop_table("score_history")
    _rewrite_weights(Decimal(100))
    op.drop_index("uq_scoring_profiles_active", table_name="scoring_profiles")
    with op.batch_alter_table("scoring_profiles") as batch:
        batch.drop_column("active")
    op.drop_table("audit_events")
    op.drop_index("uq_api_keys_live_participant", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("participants")
