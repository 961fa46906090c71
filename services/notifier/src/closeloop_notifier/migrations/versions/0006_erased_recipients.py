"""notifier: erased_recipients (addresses of erased respondents, as keyed hashes)

Revision ID: 0006
Revises: 0005

When a respondent is erased (GDPR article 17), their address and any opt-out of it are removed,
but no message may ever reach them again: `erased_recipients` keeps HMAC-SHA256 of the opt-out
key under `NOTIFIER_ERASURE_KEY`, which the dispatcher checks before every send beside the
opt-outs. The address itself is gone (a keyed hash cannot be reversed by hashing guesses
without the key).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_recipients",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("key_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key_hash", name="pk_erased_recipients"),
        schema="notifier",
    )


def downgrade() -> None:
    op.drop_table("erased_recipients", schema="notifier")
