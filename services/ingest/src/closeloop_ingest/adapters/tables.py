"""The `ingest` schema: accepted responses (the deduplication record) plus outbox and inbox."""

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
    sa.CheckConstraint("score BETWEEN 0 AND 10", name="score_range"),
)
