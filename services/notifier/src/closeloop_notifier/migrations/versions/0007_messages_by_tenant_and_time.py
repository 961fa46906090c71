"""notifier: ix_messages_tenant_created (the message list, newest first, from an index)

Revision ID: 0007
Revises: 0006

`GET /v1/messages` lists a tenant's newest messages. Without an index on (tenant, created_at)
PostgreSQL read and sorted every message of the tenant for each page: `make soak` saw the list's
p99 double in 30 minutes as the table grew. On a large existing table, create the index by hand
with `CREATE INDEX CONCURRENTLY notifier.ix_messages_tenant_created ...` before migrating; this
migration then finds it and does nothing.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_tenant_created",
        "messages",
        ["tenant_id", "created_at"],
        schema="notifier",
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_tenant_created", table_name="messages", schema="notifier")
