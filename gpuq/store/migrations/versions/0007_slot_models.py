"""A slot may be tied to a GPU model: it goes to the best result on that model.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("slots") as batch:
        batch.add_column(sa.Column("gpu_model", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("slots") as batch:
        batch.drop_column("gpu_model")
