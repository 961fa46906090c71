"""The `orchestrator` schema: follow-up cases (one per response), plus outbox and inbox."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from closeloop_common.db import schema_metadata

SCHEMA = "orchestrator"
metadata = schema_metadata(SCHEMA)

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("case_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("response_id", sa.Text, nullable=False),
    sa.Column("survey_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("customer", postgresql.JSONB, nullable=False),
    sa.Column("account_id", sa.Text),
    sa.Column("score", sa.SmallInteger, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("playbook", sa.Text, nullable=False),
    sa.Column("owner_id", sa.Text, nullable=False),
    sa.Column("owner_name", sa.Text, nullable=False),
    sa.Column("owner_email", sa.Text, nullable=False),
    sa.Column("key_account", sa.Boolean, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("first_contact_due_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("tenant_id", "response_id"),
    sa.Index(
        "ix_cases_open_due",
        "tenant_id",
        "first_contact_due_at",
        postgresql_where=sa.text("status = 'open'"),
    ),
)

# SLA timers of the cases (see `domain/sla.py`): one row per (case, clock, kind, step, round), so setting
# them again is a no-op. The watcher scans only pending rows whose time has come, through the
# partial index on `due_at`, and takes them with `FOR UPDATE SKIP LOCKED`, so replicas share the
# work without firing a timer twice.
timers = sa.Table(
    "timers",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("case_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("clock", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("step", sa.SmallInteger, primary_key=True),
    # How many times the clock was started: reopening a case starts its resolution clock again.
    sa.Column("round", sa.SmallInteger, primary_key=True),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("to_role", sa.Text, nullable=False),
    sa.Column("fired_at", sa.DateTime(timezone=True)),
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    sa.Index(
        "ix_timers_pending_due",
        "due_at",
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    ),
)
