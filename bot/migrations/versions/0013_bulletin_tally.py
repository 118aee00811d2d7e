"""a bulletin's tally: its delivery figures and chart, kept when retention deletes the outbox
rows they were counted from

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("bulletins") as batch_op:
        # Empty: nothing folded yet; the figures are the outbox rows', as until now.
        batch_op.add_column(
            sa.Column("tally", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("bulletins") as batch_op:
        batch_op.drop_column("tally")
