"""orchestrator: indexes for deleting old outbox and inbox rows

Revision ID: 0002
Revises: 0001
"""

from closeloop_common.migrations import (
    add_messaging_retention_indexes,
    drop_messaging_retention_indexes,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_messaging_retention_indexes("orchestrator")


def downgrade() -> None:
    drop_messaging_retention_indexes("orchestrator")
