"""The `notifier` schema: messages (one per case and template: never twice), opt-outs, outbox, inbox."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from closeloop_common.db import schema_metadata

SCHEMA = "notifier"
metadata = schema_metadata(SCHEMA)

# One row per message of any kind (`domain.kinds`), unique per tenant by `dedup_key`: never twice.
# status: draft (waits for its owner's approval) -> pending -> sending (claimed under a lease) ->
# sent | pending (retry) | failed; suppressed (opted out, over the frequency cap), discarded (a
# draft the owner threw away, or a cancelled campaign's message), no_recipient and failed
# (unsendable address) can be final at once; held: a paused campaign's message (not due).
# recipient: the normalised address, or the webhook URL; recipient_key: the opt-out key of a
# customer's address (frequency cap, opt-outs). Rows written before addresses were normalised are
# checked again when they are sent.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("message_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("dedup_key", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("audience", sa.Text, nullable=False),
    sa.Column("case_id", postgresql.UUID(as_uuid=True)),
    sa.Column("campaign_id", postgresql.UUID(as_uuid=True)),
    sa.Column("response_id", sa.Text),
    sa.Column("customer_id", sa.Text),
    sa.Column("locale", sa.Text, nullable=False),
    sa.Column("time_zone", sa.Text),  # the recipient's, for quiet hours (customers only)
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("recipient", sa.Text),
    sa.Column("recipient_key", sa.Text),
    sa.Column("reply_to", sa.Text),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the plain-text part
    sa.Column("html", sa.Text),
    sa.Column("payload", postgresql.JSONB),  # webhook messages: the JSON body
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    # While `sending`: when the claim expires and another dispatcher may take the message.
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("reviewed_by", sa.Text),  # a draft's approver (or who discarded it)
    sa.Column("reviewed_at", sa.DateTime(timezone=True)),
    sa.Column("edited", sa.Boolean, nullable=False, server_default=sa.false()),
    # The W3C traceparent of the work that stored the message (the event it was made for): the
    # dispatcher's send span joins that trace. Null when tracing was off.
    sa.Column("traceparent", sa.Text),
    sa.UniqueConstraint("tenant_id", "dedup_key"),
    sa.Index("ix_messages_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
    sa.Index("ix_messages_lease", "lease_until", postgresql_where=sa.text("status = 'sending'")),
    sa.Index("ix_messages_case", "tenant_id", "case_id"),
    # The message list (`GET /v1/messages`, newest first): read from the index, not by sorting
    # every message of the tenant (the soak found its p99 doubling as the table grew).
    sa.Index("ix_messages_tenant_created", "tenant_id", "created_at"),
    sa.Index(
        "ix_messages_recipient_sent",
        "tenant_id",
        "recipient_key",
        "sent_at",
        postgresql_where=sa.text("status = 'sent' AND audience = 'customer'"),
    ),
    sa.Index(
        "ix_messages_campaign",
        "tenant_id",
        "campaign_id",
        "status",
        postgresql_where=sa.text("campaign_id IS NOT NULL"),
    ),
    sa.Index(
        "ix_messages_drafts",
        "tenant_id",
        "created_at",
        postgresql_where=sa.text("status = 'draft'"),
    ),
)

opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    # The opt-out key: the normalised address, lower-cased (service_layer.policy.opt_out_key).
    sa.Column("email", sa.Text, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Erased respondents' addresses as keyed hashes (HMAC-SHA256 of the opt-out key under
# NOTIFIER_ERASURE_KEY): the address is gone, yet no message is ever sent to it again.
erased_recipients = sa.Table(
    "erased_recipients",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("key_hash", sa.Text, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# A tenant's own template of a kind in a language (built-in ones are files in the package).
templates = sa.Table(
    "templates",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("locale", sa.Text, primary_key=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
)

# A tenant's messaging settings (domain.tenant_settings.MessagingSettings as JSON), versioned.
tenant_settings = sa.Table(
    "tenant_settings",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("settings", postgresql.JSONB, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
)

# The audience, kept from ingest's events: the latest address of each customer ...
contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("locale", sa.Text),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),  # the event's time
)

# ... every invitation (respondents or not) with its segment ...
invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("invitation_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("survey_id", sa.Text, nullable=False),
    sa.Column("account_id", sa.Text),
    sa.Column("product", sa.Text),
    sa.Column("region", sa.Text),
    sa.Column("channel", sa.Text),
    sa.Column("touchpoint", sa.Text),
    sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
)

# ... and which customer gave each response.
respondents = sa.Table(
    "respondents",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("response_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("responded_at", sa.DateTime(timezone=True), nullable=False),
)

# A "you said, we did" campaign, one per change-summary event. It is expanded into messages page
# by page (the cursors are committed with each page's messages: a restart resumes, never repeats)
# and throttled by the due times it gives them (`next_slot_at`, `rate_per_second`).
# status: expanding -> sending -> done; paused and cancelled by the API.
campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("campaign_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("change_id", sa.Text, nullable=False),
    sa.Column("change_status", sa.Text, nullable=False),
    sa.Column("content", postgresql.JSONB, nullable=False),  # the change.summary.v1 data
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("rate_per_second", sa.Float, nullable=False),
    sa.Column("respondents_done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("invitations_after", sa.Text),  # the last invitation id expanded
    sa.Column("invitations_done", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("recipients", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_slot_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expanded_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Index(
        "ix_campaigns_active",
        "created_at",
        postgresql_where=sa.text("status IN ('expanding', 'sending')"),
    ),
)

# Each case as the notifier knows it from case events: for the daily overdue digest and the
# SLA alerts (whose events carry no score or comment).
case_view = sa.Table(
    "case_view",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("case_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("owner_id", sa.Text),
    sa.Column("owner_name", sa.Text),
    sa.Column("owner_email", sa.Text),
    sa.Column("customer_name", sa.Text),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("account_id", sa.Text),
    sa.Column("key_account", sa.Boolean, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("first_contact_due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolution_due_at", sa.DateTime(timezone=True)),
    sa.Column("first_contacted_at", sa.DateTime(timezone=True)),
    sa.Index(
        "ix_case_view_open",
        "tenant_id",
        "owner_id",
        postgresql_where=sa.text("status NOT IN ('resolved', 'closed')"),
    ),
)
