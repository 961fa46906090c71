"""The `orchestrator` schema: follow-up cases (one per response), plus outbox and inbox."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from closeloop_common.db import schema_metadata

SCHEMA = "orchestrator"
metadata = schema_metadata(SCHEMA)

# One follow-up case per response (unique per tenant and response: a duplicate never opens a
# second). Its lifecycle state (`domain/lifecycle.py`) is stored in columns, with `version` the
# optimistic-concurrency token; `*_round` count the starts of each SLA clock (its timers' round).
ACTIVE_STATUSES = ("open", "in_progress", "contacted")
_ACTIVE = sa.text("status IN ('open', 'in_progress', 'contacted')")

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
    sa.Column("segments", postgresql.JSONB, nullable=False),
    # Null for a lack-of-response case (`case_type` `no_response`), which has no answer; its
    # `response_id` is `no-response:<invitation id>` and `invitation_id` the unanswered invitation.
    sa.Column("score", sa.SmallInteger),
    sa.Column("category", sa.Text),
    sa.Column("comment", sa.Text),
    sa.Column("case_type", sa.Text, nullable=False),
    sa.Column("playbook", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("rule", sa.Text),
    sa.Column("team_id", sa.Text),
    sa.Column("queue", sa.Text),
    # Whether the deadlines (and so warnings and escalations) count the team's business hours.
    sa.Column("business_hours", sa.Boolean, nullable=False),
    sa.Column("owner_id", sa.Text),
    sa.Column("owner_name", sa.Text),
    sa.Column("owner_email", sa.Text),
    sa.Column("key_account", sa.Boolean, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("first_contact_due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolution_due_at", sa.DateTime(timezone=True)),
    sa.Column("first_contacted_at", sa.DateTime(timezone=True)),
    sa.Column("contact_attempts", sa.Integer, nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("resolution", sa.Text),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("resurvey_due_at", sa.DateTime(timezone=True)),
    sa.Column("root_causes", postgresql.ARRAY(sa.Text), nullable=False),
    sa.Column("first_contact_round", sa.SmallInteger, nullable=False),
    sa.Column("resolution_round", sa.SmallInteger, nullable=False),
    sa.Column("invitation_id", sa.Text),
    sa.UniqueConstraint("tenant_id", "response_id"),
    sa.CheckConstraint(
        "CASE WHEN case_type = 'no_response' THEN invitation_id IS NOT NULL "
        "ELSE score IS NOT NULL AND category IS NOT NULL END",
        name="answer_or_no_response",
    ),
    # The list's order (key accounts first, then the nearest first-contact deadline) and cursor.
    sa.Index(
        "ix_cases_list",
        "tenant_id",
        sa.text("(NOT key_account)"),
        "first_contact_due_at",
        "case_id",
    ),
    # An account's cases (its review pack, `GET /v1/cases?account_id=`).
    sa.Index(
        "ix_cases_account",
        "tenant_id",
        "account_id",
        "opened_at",
        postgresql_where=sa.text("account_id IS NOT NULL"),
    ),
    # Least-loaded assignment counts an owner's active cases.
    sa.Index("ix_cases_active_owner", "tenant_id", "owner_id", postgresql_where=_ACTIVE),
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

# One row per transition of a case (`domain/lifecycle.py`), the opening included: the case's full
# history, in version order. Written in the transaction of the change, with its event.
case_history = sa.Table(
    "case_history",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("case_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("from_status", sa.Text),
    sa.Column("to_status", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("details", postgresql.JSONB, nullable=False),
)

# A tenant's set-up as the admin API stored it (`domain/setup.py`): `kind` is `rules` or
# `organisation`; `version` grows by one per change (the ETag of the admin API), and the
# consumer reloads a tenant's set-up when it sees a new version.
tenant_setup = sa.Table(
    "tenant_setup",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", postgresql.JSONB, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
)

# Round-robin turns given per team (`assignment.by_round_robin`); the row is locked while a batch
# assigns, so two replicas hand out distinct turns.
team_turns = sa.Table(
    "team_turns",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("turns", sa.BigInteger, nullable=False),
)

# Who owns which account, as a CRM syncs it over the API (`PUT /v1/account-owners`).
account_owners = sa.Table(
    "account_owners",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("account_id", sa.Text, primary_key=True),
    sa.Column("owner_id", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The orchestrator's own copy of the responses it was sent (the last version of each), for
# retroactive rules and corrections: services never read each other's tables.
responses = sa.Table(
    "responses",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("response_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", postgresql.JSONB, nullable=False),
    sa.Index("ix_responses_answered", "tenant_id", "answered_at"),
    # An invitation that arrives after its answer finds it by the customer (`silence.py`).
    sa.Index(
        "ix_responses_customer",
        "tenant_id",
        sa.text("((body -> 'customer'::text) ->> 'id'::text)"),
    ),
)

# The structural issues backlog (`domain/backlog.py`): what many customers complain about, with
# its estimated NPS impact (scoring's what-if, with its interval; null when unknown), its cost in
# a unit the tenant chooses, and its status. `customer_text` is what customers are told when it is
# done or rejected ({locale: {title, summary | reason, you_said}}), `locale` the main language.
# `owner` is {id, name, email} or null; `version` is the optimistic-concurrency token (ETag).
ISSUE_STATUSES = ("proposed", "prioritised", "in_progress", "done", "rejected")
structural_issues = sa.Table(
    "structural_issues",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("issue_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("theme", sa.Text),
    # Scoring's filter names (survey, account, product, region, channel, touchpoint) -> value.
    sa.Column("filters", postgresql.JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("owner", postgresql.JSONB),
    sa.Column("cost", sa.Numeric(14, 3), nullable=False),
    sa.Column("cost_unit", sa.Text, nullable=False),
    sa.Column("impact", postgresql.JSONB),
    sa.Column("locale", sa.Text),
    sa.Column("customer_text", postgresql.JSONB),
    sa.Column("notify_segment", sa.Boolean, nullable=False),
    # The responses scoring found the theme in (detractors and passives; at most 10,000), with
    # or without a case: their respondents hear about the decision too.
    sa.Column(
        "theme_responses",
        postgresql.ARRAY(sa.Text),
        nullable=False,
        server_default=sa.text("'{}'::text[]"),
    ),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("cost > 0", name="cost_positive"),
    sa.CheckConstraint("source IN ('theme', 'cases')", name="source_known"),
    sa.CheckConstraint(
        "status IN ('proposed', 'prioritised', 'in_progress', 'done', 'rejected')",
        name="status_known",
    ),
    sa.CheckConstraint("status <> 'rejected' OR reason IS NOT NULL", name="rejection_has_reason"),
    sa.Index("ix_structural_issues_tenant_id_status", "tenant_id", "status"),
)

# The cases an issue concerns: their respondents hear about it when it is done or rejected.
structural_issue_cases = sa.Table(
    "structural_issue_cases",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("issue_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("case_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("response_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("account_id", sa.Text),
    sa.ForeignKeyConstraint(
        ["tenant_id", "issue_id"],
        [structural_issues.c.tenant_id, structural_issues.c.issue_id],
        ondelete="CASCADE",
    ),
)

# One row per change of an issue (created, estimated, each transition), in version order.
structural_issue_history = sa.Table(
    "structural_issue_history",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("issue_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("from_status", sa.Text),
    sa.Column("to_status", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("details", postgresql.JSONB, nullable=False),
    sa.ForeignKeyConstraint(
        ["tenant_id", "issue_id"],
        [structural_issues.c.tenant_id, structural_issues.c.issue_id],
        ondelete="CASCADE",
    ),
)

# The invitations the orchestrator was told about (`invitation.sent.v1`): the base of re-survey
# response rates (the loop's impact) and of silence. `answered_at`/`response_id` are set by the
# first response of that customer to that survey after the invitation. `silence_due_at` is set
# when the invitation went to a key contact of a key account: if still unanswered then, a
# lack-of-response case is opened (`silence_case_id`).
invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("invitation_id", sa.Text, primary_key=True),
    sa.Column("survey_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("customer", postgresql.JSONB, nullable=False),
    sa.Column("account_id", sa.Text),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("attributes", postgresql.JSONB, nullable=False),
    sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("answered_at", sa.DateTime(timezone=True)),
    sa.Column("response_id", sa.Text),
    sa.Column("silence_due_at", sa.DateTime(timezone=True)),
    sa.Column("silence_case_id", postgresql.UUID(as_uuid=True)),
    sa.Index("ix_invitations_customer", "tenant_id", "customer_id", "invited_at"),
    sa.Index(
        "ix_invitations_silence_due",
        "silence_due_at",
        postgresql_where=sa.text(
            "silence_due_at IS NOT NULL AND answered_at IS NULL AND silence_case_id IS NULL"
        ),
    ),
)

# Actions agreed with a B2B account (in a review or a call), shown with their status in the
# account's quarterly review pack. `owner` is {id, name, email} or null; `issue_id` optionally
# links a structural issue; `version` is the optimistic-concurrency token (ETag).
ACTION_STATUSES = ("agreed", "in_progress", "done", "dropped")
account_actions = sa.Table(
    "account_actions",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("action_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("account_id", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("owner", postgresql.JSONB),
    sa.Column("due_on", sa.Date),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("issue_id", postgresql.UUID(as_uuid=True)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("agreed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint(
        "status IN ('agreed', 'in_progress', 'done', 'dropped')", name="status_known"
    ),
    sa.Index("ix_account_actions_account", "tenant_id", "account_id", "agreed_at"),
)
