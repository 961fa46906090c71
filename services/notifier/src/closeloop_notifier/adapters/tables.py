"""The `notifier` schema: messages (one per case and template: never twice), opt-outs, outbox, inbox."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from closeloop_common.db import schema_metadata

SCHEMA = "notifier"
metadata = schema_metadata(SCHEMA)

# status: pending -> sent | failed; suppressed (opted out) and no_recipient are final at once.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("message_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("case_id", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column("response_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("locale", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("recipient", sa.Text),
    sa.Column("reply_to", sa.Text),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("tenant_id", "case_id", "template"),
    sa.Index("ix_messages_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
)

opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, primary_key=True),  # stored lower-case
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
