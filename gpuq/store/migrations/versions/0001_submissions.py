"""Scoring profiles and submissions.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from gpuq.store.types import ExactDecimal, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PERCENT_METRICS = ("gpu_utilization", "memory_usage", "power_efficiency", "accuracy")
ALL_METRICS = ("gpu_utilization", "memory_usage", "power_efficiency", "completion_time", "accuracy")


def _between(column: str) -> str:
    return f"{column} >= 0 AND {column} <= 100"


def upgrade() -> None:
    op.create_table(
        "scoring_profiles",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_scoring_profiles")),
    )
    op.create_table(
        "submissions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("gpu_utilization", ExactDecimal(7, 4), nullable=False),
        sa.Column("memory_usage", ExactDecimal(7, 4), nullable=False),
        sa.Column("power_efficiency", ExactDecimal(7, 4), nullable=False),
        sa.Column("completion_time", ExactDecimal(12, 4), nullable=False),
        sa.Column("accuracy", ExactDecimal(7, 4), nullable=False),
        sa.Column("score", ExactDecimal(5, 2), nullable=False),
        *(sa.Column(f"points_{m}", ExactDecimal(7, 4), nullable=False) for m in ALL_METRICS),
        sa.Column("profile_version", sa.Integer(), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        *(sa.CheckConstraint(_between(m), name=op.f(f"ck_submissions_{m}_range")) for m in PERCENT_METRICS),
        sa.CheckConstraint(
            "completion_time > 0 AND completion_time <= 86400",
            name=op.f("ck_submissions_completion_time_range"),
        ),
        sa.CheckConstraint(_between("score"), name=op.f("ck_submissions_score_range")),
        sa.CheckConstraint(
            " AND ".join(_between(f"points_{m}") for m in ALL_METRICS),
            name=op.f("ck_submissions_points_range"),
        ),
        sa.ForeignKeyConstraint(
            ["profile_version"],
            ["scoring_profiles.version"],
            name=op.f("fk_submissions_profile_version_scoring_profiles"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
    )
    op.create_index("ix_submissions_ranking", "submissions", [sa.text("score DESC"), "id"])


def downgrade() -> None:
    op.drop_index("ix_submissions_ranking", table_name="submissions")
    op.drop_table("submissions")
    op.drop_table("scoring_profiles")
