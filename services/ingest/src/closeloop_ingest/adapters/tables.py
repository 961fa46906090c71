"""The `ingest` schema: responses (the deduplication and version record), raw deliveries, sources,
invitations, vendor fetches, plus outbox and inbox. Migrations are the source of truth; these
describe the tables for queries."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from closeloop_common.db import schema_metadata

SCHEMA = "ingest"
metadata = schema_metadata(SCHEMA)

responses = sa.Table(
    "responses",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("response_id", sa.Text, primary_key=True),
    sa.Column("survey_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("account_id", sa.Text),
    sa.Column("score", sa.SmallInteger, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("payload", postgresql.JSONB, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("version_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="accepted"),
    sa.Column("suspicion", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.CheckConstraint("score BETWEEN 0 AND 10", name="score_range"),
    sa.Index(
        "responses_suspected",
        "tenant_id",
        "received_at",
        postgresql_where=sa.text("status = 'suspected'"),
    ),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("definition", postgresql.JSONB, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    sa.Index("sources_revision", "revision"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("delivery_id", sa.Text),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("headers", postgresql.JSONB, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("response_ids", postgresql.ARRAY(sa.Text), nullable=False),
    sa.Index("deliveries_received_at", "received_at", postgresql_using="brin"),
    sa.Index("deliveries_source", "tenant_id", "source", "id"),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("invitation_id", sa.Text, primary_key=True),
    sa.Column("survey_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("payload", postgresql.JSONB, nullable=False),
    sa.Index("invitations_customer", "tenant_id", "customer_id", "survey_id", "invited_at"),
)

fetches = sa.Table(
    "fetches",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("ids", postgresql.JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    sa.Column("response_ids", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Index(
        "fetches_pending_key",
        "tenant_id",
        "source",
        "key",
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    ),
    sa.Index("fetches_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
)

# Erasures asked for (GDPR article 17) and what each service reported; no identifier of the
# person erased (see `service_layer/privacy.py`).
erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("erasure_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("services", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
)
