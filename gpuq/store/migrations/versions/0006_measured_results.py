"""Measured results: provenance, flags and withholding on submissions; run tickets; evidence;
the results policy, and whether the slot line takes measured results only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from gpuq.store.types import ExactDecimal, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Constant defaults: on PostgreSQL adding these columns rewrites no row.
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(
            sa.Column("provenance", sa.String(length=16), server_default="self-reported", nullable=False)
        )
        batch.add_column(sa.Column("gpu_model", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("flags", sa.Text(), nullable=True))
        batch.add_column(sa.Column("withheld", sa.String(length=16), nullable=True))
        batch.create_check_constraint(
            op.f("ck_submissions_provenance"), "provenance IN ('measured', 'self-reported')"
        )
        batch.create_check_constraint(
            op.f("ck_submissions_withheld"),
            "withheld IS NULL OR withheld IN ('evidence', 'review', 'policy')",
        )
    op.create_index(
        "ix_submissions_withheld",
        "submissions",
        ["withheld", "id"],
        postgresql_where=sa.text("withheld IS NOT NULL"),
        sqlite_where=sa.text("withheld IS NOT NULL"),
    )
    op.create_index(
        "ix_submissions_gpu_ranked",
        "submissions",
        ["gpu_model", sa.text("score DESC"), "id"],
        postgresql_where=sa.text("ranked"),
        sqlite_where=sa.text("ranked"),
    )
    with op.batch_alter_table("slot_policy") as batch:
        batch.add_column(sa.Column("measured_only", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "result_policy",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("self_reported_ranked", sa.Boolean(), nullable=False),
        sa.Column("hold_flags", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_result_policy_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_policy")),
    )
    op.create_table(
        "run_tickets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("participant_id", ID, nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("submission_id", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_run_tickets_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"], ["submissions.id"], name=op.f("fk_run_tickets_submission_id_submissions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_tickets")),
    )
    op.create_table(
        "evidence",
        sa.Column("submission_id", ID, nullable=False),
        sa.Column("ticket_id", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("checks", sa.Text(), nullable=False),
        sa.Column("gpu_uuid", sa.String(length=128), nullable=False),
        sa.Column("energy_from", ExactDecimal(15, 3), nullable=True),
        sa.Column("energy_to", ExactDecimal(15, 3), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"], ["submissions.id"], name=op.f("fk_evidence_submission_id_submissions")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["run_tickets.id"], name=op.f("fk_evidence_ticket_id_run_tickets")
        ),
        sa.PrimaryKeyConstraint("submission_id", name=op.f("pk_evidence")),
        sa.UniqueConstraint("digest", name=op.f("uq_evidence_digest")),
    )
    op.create_index("ix_evidence_gpu_energy", "evidence", ["gpu_uuid", "energy_from"])


def downgrade() -> None:
    op.drop_index("ix_evidence_gpu_energy", table_name="evidence")
    op.drop_table("evidence")
    op.drop_table("run_tickets")
    op.drop_table("result_policy")
    op.drop_index("ix_submissions_gpu_ranked", table_name="submissions")
    op.drop_index("ix_submissions_withheld", table_name="submissions")
    with op.batch_alter_table("slot_policy") as batch:
        batch.drop_column("measured_only")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(op.f("ck_submissions_withheld"), type_="check")
        batch.drop_constraint(op.f("ck_submissions_provenance"), type_="check")
        batch.drop_column("withheld")
        batch.drop_column("flags")
        batch.drop_column("gpu_model")
        batch.drop_column("provenance")
