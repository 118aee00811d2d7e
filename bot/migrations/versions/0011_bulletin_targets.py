"""targeted bulletins: the governorates a subscriber wants news about and a bulletin goes to;
photos uploaded on the console's bulletin desk; when a delivery failed

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.models import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("contacts") as batch_op:
        # None: news about all of Iraq, as every subscriber had until now.
        batch_op.add_column(sa.Column("bulletin_places", sa.String(length=200), nullable=True))
    with op.batch_alter_table("bulletins") as batch_op:
        batch_op.add_column(
            sa.Column("places", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("failed_at", UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        "bulletin_pictures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("media_type", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("bulletin_pictures")
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("failed_at")
    with op.batch_alter_table("bulletins") as batch_op:
        batch_op.drop_column("places")
    with op.batch_alter_table("contacts") as batch_op:
        batch_op.drop_column("bulletin_places")
