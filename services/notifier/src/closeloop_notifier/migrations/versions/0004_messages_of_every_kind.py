"""notifier: messages of every kind, templates, settings, audience, campaigns, case view

Revision ID: 0004
Revises: 0003

- `messages` holds every kind (customer replies, "what we did", change summaries, owner alerts,
  digests): `template` becomes `kind`; `dedup_key` (unique per tenant) replaces the unique
  (tenant, case, template), old rows keyed `case:<case id>:<kind>` as the code keys them; a
  message need not have a case or a customer; html, payload (webhooks), audience, recipient key
  and time zone, and the review of drafts.
- `templates` (a tenant's own), `tenant_settings`, the audience (`contacts`, `invitations`,
  `respondents`), `campaigns` and `case_view`: see adapters/tables.py.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "notifier"


def _timestamp(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.alter_column("messages", "template", new_column_name="kind", schema=S)
    for column in ("case_id", "response_id", "customer_id"):
        op.alter_column("messages", column, nullable=True, schema=S)
    op.add_column("messages", sa.Column("dedup_key", sa.Text), schema=S)
    op.add_column(
        "messages",
        sa.Column("audience", sa.Text, nullable=False, server_default="customer"),
        schema=S,
    )
    op.alter_column("messages", "audience", server_default=None, schema=S)
    op.add_column("messages", sa.Column("campaign_id", postgresql.UUID(as_uuid=True)), schema=S)
    op.add_column("messages", sa.Column("time_zone", sa.Text), schema=S)
    op.add_column("messages", sa.Column("recipient_key", sa.Text), schema=S)
    op.add_column("messages", sa.Column("html", sa.Text), schema=S)
    op.add_column("messages", sa.Column("payload", postgresql.JSONB), schema=S)
    op.add_column("messages", sa.Column("reviewed_by", sa.Text), schema=S)
    op.add_column("messages", _timestamp("reviewed_at"), schema=S)
    op.add_column(
        "messages",
        sa.Column("edited", sa.Boolean, nullable=False, server_default=sa.false()),
        schema=S,
    )
    op.execute(
        "UPDATE notifier.messages SET dedup_key = 'case:' || case_id::text || ':' || kind, "
        "recipient_key = lower(recipient)"
    )
    op.alter_column("messages", "dedup_key", nullable=False, schema=S)
    op.drop_constraint(
        "uq_messages_tenant_id_case_id_template", "messages", type_="unique", schema=S
    )
    op.create_unique_constraint(
        "uq_messages_tenant_id_dedup_key", "messages", ["tenant_id", "dedup_key"], schema=S
    )
    op.create_index("ix_messages_case", "messages", ["tenant_id", "case_id"], schema=S)
    op.create_index(
        "ix_messages_recipient_sent",
        "messages",
        ["tenant_id", "recipient_key", "sent_at"],
        schema=S,
        postgresql_where=sa.text("status = 'sent' AND audience = 'customer'"),
    )
    op.create_index(
        "ix_messages_campaign",
        "messages",
        ["tenant_id", "campaign_id", "status"],
        schema=S,
        postgresql_where=sa.text("campaign_id IS NOT NULL"),
    )
    op.create_index(
        "ix_messages_drafts",
        "messages",
        ["tenant_id", "created_at"],
        schema=S,
        postgresql_where=sa.text("status = 'draft'"),
    )
    op.create_table(
        "templates",
        sa.Column("tenant_id", sa.Text),
        sa.Column("kind", sa.Text),
        sa.Column("locale", sa.Text),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "locale", name="pk_templates"),
        schema=S,
    )
    op.create_table(
        "tenant_settings",
        sa.Column("tenant_id", sa.Text),
        sa.Column("settings", postgresql.JSONB, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_settings"),
        schema=S,
    )
    op.create_table(
        "contacts",
        sa.Column("tenant_id", sa.Text),
        sa.Column("customer_id", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("locale", sa.Text),
        _timestamp("seen_at", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "customer_id", name="pk_contacts"),
        schema=S,
    )
    op.create_table(
        "invitations",
        sa.Column("tenant_id", sa.Text),
        sa.Column("invitation_id", sa.Text),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("survey_id", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text),
        sa.Column("product", sa.Text),
        sa.Column("region", sa.Text),
        sa.Column("channel", sa.Text),
        sa.Column("touchpoint", sa.Text),
        _timestamp("invited_at", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "invitation_id", name="pk_invitations"),
        schema=S,
    )
    op.create_table(
        "respondents",
        sa.Column("tenant_id", sa.Text),
        sa.Column("response_id", sa.Text),
        sa.Column("customer_id", sa.Text, nullable=False),
        _timestamp("responded_at", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "response_id", name="pk_respondents"),
        schema=S,
    )
    op.create_table(
        "campaigns",
        sa.Column("tenant_id", sa.Text),
        sa.Column("campaign_id", postgresql.UUID(as_uuid=True)),
        sa.Column("change_id", sa.Text, nullable=False),
        sa.Column("change_status", sa.Text, nullable=False),
        sa.Column("content", postgresql.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("rate_per_second", sa.Float, nullable=False),
        sa.Column("respondents_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("invitations_after", sa.Text),
        sa.Column("invitations_done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("recipients", sa.Integer, nullable=False, server_default="0"),
        _timestamp("next_slot_at", nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("expanded_at"),
        _timestamp("finished_at"),
        sa.PrimaryKeyConstraint("tenant_id", "campaign_id", name="pk_campaigns"),
        schema=S,
    )
    op.create_index(
        "ix_campaigns_active",
        "campaigns",
        ["created_at"],
        schema=S,
        postgresql_where=sa.text("status IN ('expanding', 'sending')"),
    )
    op.create_table(
        "case_view",
        sa.Column("tenant_id", sa.Text),
        sa.Column("case_id", postgresql.UUID(as_uuid=True)),
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
        _timestamp("first_contact_due_at", nullable=False),
        _timestamp("resolution_due_at"),
        _timestamp("first_contacted_at"),
        sa.PrimaryKeyConstraint("tenant_id", "case_id", name="pk_case_view"),
        schema=S,
    )
    op.create_index(
        "ix_case_view_open",
        "case_view",
        ["tenant_id", "owner_id"],
        schema=S,
        postgresql_where=sa.text("status NOT IN ('resolved', 'closed')"),
    )


def downgrade() -> None:
    for table in (
        "case_view",
        "campaigns",
        "respondents",
        "invitations",
        "contacts",
        "tenant_settings",
        "templates",
    ):
        op.drop_table(table, schema=S)
    # Only case messages to customers existed before: the others cannot be kept.
    op.execute(
        "DELETE FROM notifier.messages WHERE case_id IS NULL OR response_id IS NULL "
        "OR customer_id IS NULL OR audience <> 'customer' "
        "OR kind NOT IN ('thanks', 'apology', 'improvement_ask')"
    )
    for index in ("ix_messages_drafts", "ix_messages_campaign", "ix_messages_recipient_sent"):
        op.drop_index(index, table_name="messages", schema=S)
    op.drop_index("ix_messages_case", table_name="messages", schema=S)
    op.drop_constraint("uq_messages_tenant_id_dedup_key", "messages", type_="unique", schema=S)
    op.execute("UPDATE notifier.messages SET status = 'pending' WHERE status = 'draft'")
    op.execute("UPDATE notifier.messages SET status = 'suppressed' WHERE status = 'discarded'")
    for column in (
        "edited",
        "reviewed_at",
        "reviewed_by",
        "payload",
        "html",
        "recipient_key",
        "time_zone",
        "campaign_id",
        "audience",
        "dedup_key",
    ):
        op.drop_column("messages", column, schema=S)
    for column in ("case_id", "response_id", "customer_id"):
        op.alter_column("messages", column, nullable=False, schema=S)
    op.alter_column("messages", "kind", new_column_name="template", schema=S)
    op.create_unique_constraint(
        "uq_messages_tenant_id_case_id_template",
        "messages",
        ["tenant_id", "case_id", "template"],
        schema=S,
    )
