"""The `notifier` schema: messages (one per case and template: never twice), opt-outs, outbox, inbox."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from closeloop_common.db import schema_metadata

SCHEMA = "notifier"
metadata = schema_metadata(SCHEMA)

# status: pending -> sending (claimed under a lease) -> sent | pending (retry) | failed;
# suppressed (opted out), no_recipient and failed (unsendable address) can also be final at once.
# recipient and reply_to hold normalised addresses (closeloop_common.emails); rows written before
# addresses were normalised are checked again when they are sent.
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
    # While `sending`: when the claim expires and another dispatcher may take the message.
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("tenant_id", "case_id", "template"),
    sa.Index("ix_messages_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
    sa.Index("ix_messages_lease", "lease_until", postgresql_where=sa.text("status = 'sending'")),
)

opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    # The opt-out key: the normalised address, lower-cased (service_layer.policy.opt_out_key).
    sa.Column("email", sa.Text, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
