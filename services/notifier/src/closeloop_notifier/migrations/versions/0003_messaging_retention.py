"""notifier: indexes for deleting old outbox and inbox rows

Revision ID: 0003
Revises: 0002
"""

from closeloop_common.migrations import (
    add_messaging_retention_indexes,
    drop_messaging_retention_indexes,
)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_messaging_retention_indexes("notifier")


def downgrade() -> None:
    drop_messaging_retention_indexes("notifier")
