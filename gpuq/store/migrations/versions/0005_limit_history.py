"""Indexes for the submission limits' history: an address's and a participant's recent
submissions (gpuq.ratelimit seeds its logs from them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_submissions_address_created", "submissions", ["client_address", "created_at"])
    owned = sa.text("participant_id IS NOT NULL")
    op.create_index(
        "ix_submissions_participant_created",
        "submissions",
        ["participant_id", "created_at"],
        postgresql_where=owned,
        sqlite_where=owned,
    )


def downgrade() -> None:
    op.drop_index("ix_submissions_participant_created", table_name="submissions")
    op.drop_index("ix_submissions_address_created", table_name="submissions")
