"""notifier: messages.lease_until (claims while sending), opt-out keys normalised

Revision ID: 0002
Revises: 0001

- `lease_until` and its partial index let the dispatcher send outside the database transaction:
  a message is claimed (`sending`, under a lease), sent, then recorded; a claim whose lease ran
  out (the process died) is found by the index.
- Opt-outs were keyed by the lower-cased address as given; they are re-keyed by the normalised
  address (IDNA domain), so an opt-out matches every spelling of its address. Two old keys that
  normalise to one become one row; a key that is no valid address is kept as it was.
"""

import sqlalchemy as sa
from alembic import op

from closeloop_common.emails import InvalidEmailAddress, normalize_email

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "messages", sa.Column("lease_until", sa.DateTime(timezone=True)), schema="notifier"
    )
    op.create_index(
        "ix_messages_lease",
        "messages",
        ["lease_until"],
        schema="notifier",
        postgresql_where=sa.text("status = 'sending'"),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT tenant_id, email FROM notifier.opt_outs")).all()
    for tenant_id, email in rows:
        try:
            key = normalize_email(email).lower()
        except InvalidEmailAddress:
            continue
        if key == email:
            continue
        connection.execute(
            sa.text(
                "INSERT INTO notifier.opt_outs (tenant_id, email, created_at) "
                "SELECT tenant_id, :key, created_at FROM notifier.opt_outs "
                "WHERE tenant_id = :tenant AND email = :email ON CONFLICT DO NOTHING"
            ),
            {"tenant": tenant_id, "email": email, "key": key},
        )
        connection.execute(
            sa.text("DELETE FROM notifier.opt_outs WHERE tenant_id = :tenant AND email = :email"),
            {"tenant": tenant_id, "email": email},
        )


def downgrade() -> None:
    # Messages claimed under a lease go back to the queue; normalised opt-out keys stay (the old
    # code lower-cases what it compares, and a normalised key is lower-case already).
    op.execute(
        "UPDATE notifier.messages SET status = 'pending', next_attempt_at = now() "
        "WHERE status = 'sending'"
    )
    op.drop_index("ix_messages_lease", table_name="messages", schema="notifier")
    op.drop_column("messages", "lease_until", schema="notifier")
