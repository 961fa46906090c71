"""notifier: messages.traceparent (the trace a message is sent in)

Revision ID: 0005
Revises: 0004

A message is stored by the consumer in the trace of the event it was made for (`case.opened.v1`)
and sent later by the dispatcher: `traceparent` keeps that event's W3C Trace Context, so the
send's span joins the trace that began with the response (null when tracing was off, and for
messages of no one event: campaigns, digests).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("traceparent", sa.Text), schema="notifier")


def downgrade() -> None:
    op.drop_column("messages", "traceparent", schema="notifier")
