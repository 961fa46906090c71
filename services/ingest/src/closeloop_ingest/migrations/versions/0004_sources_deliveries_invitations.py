"""ingest: survey-tool sources, raw deliveries, response versions and suspicion, invitations,
vendor fetches

Revision ID: 0004
Revises: 0003

- `sources`: a tenant's survey-tool sources (kind, secrets, mapping), soft-deleted so a change
  (including a delete) always moves `revision` forward: every ingest replica polls the highest
  revision to refresh its cache.
- `deliveries`: every accepted webhook as it arrived (raw bytes, chosen headers, outcome), so a
  delivery can be audited and replayed; old rows are deleted by the retention worker.
- `responses` gains its version (`version`, `version_at`: the tool's update time or the answer
  time) and `status` (`accepted`, or `suspected` while it looks automated).
- `invitations`: who was asked, when, through which survey and channel.
- `fetches`: ids a tool's webhook named (SurveyMonkey, Qualtrics) whose response a worker fetches
  from the vendor's API, with retries.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "ingest"


def upgrade() -> None:
    op.execute(sa.text(f"CREATE SEQUENCE {S}.source_revisions"))
    op.create_table(
        "sources",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("definition", postgresql.JSONB, nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger,
            nullable=False,
            server_default=sa.text(f"nextval('{S}.source_revisions')"),
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        schema=S,
    )
    op.create_index("sources_revision", "sources", ["revision"], schema=S)

    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("delivery_id", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("headers", postgresql.JSONB, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("response_ids", postgresql.ARRAY(sa.Text), nullable=False),
        schema=S,
    )
    op.execute(sa.text(f"ALTER TABLE {S}.deliveries ALTER COLUMN body SET COMPRESSION lz4"))
    op.create_index(
        "deliveries_received_at",
        "deliveries",
        ["received_at"],
        schema=S,
        postgresql_using="brin",
    )
    op.create_index("deliveries_source", "deliveries", ["tenant_id", "source", "id"], schema=S)

    op.add_column(
        "responses", sa.Column("version", sa.Integer, nullable=False, server_default="1"), schema=S
    )
    op.add_column("responses", sa.Column("version_at", sa.DateTime(timezone=True)), schema=S)
    op.add_column(
        "responses",
        sa.Column("status", sa.Text, nullable=False, server_default="accepted"),
        schema=S,
    )
    op.add_column(
        "responses",
        sa.Column("suspicion", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        schema=S,
    )
    op.execute(sa.text(f"UPDATE {S}.responses SET version_at = answered_at"))
    op.alter_column("responses", "version_at", nullable=False, schema=S)
    op.create_index(
        "responses_suspected",
        "responses",
        ["tenant_id", "received_at"],
        schema=S,
        postgresql_where=sa.text("status = 'suspected'"),
    )

    op.create_table(
        "invitations",
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
        schema=S,
    )
    op.create_index(
        "invitations_customer",
        "invitations",
        ["tenant_id", "customer_id", "survey_id", "invited_at"],
        schema=S,
    )

    op.create_table(
        "fetches",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
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
        schema=S,
    )
    op.create_index(
        "fetches_pending_key",
        "fetches",
        ["tenant_id", "source", "key"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "fetches_due",
        "fetches",
        ["next_attempt_at"],
        schema=S,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("fetches", schema=S)
    op.drop_table("invitations", schema=S)
    op.drop_index("responses_suspected", "responses", schema=S)
    for column in ("suspicion", "status", "version_at", "version"):
        op.drop_column("responses", column, schema=S)
    op.drop_table("deliveries", schema=S)
    op.drop_table("sources", schema=S)
    op.execute(sa.text(f"DROP SEQUENCE {S}.source_revisions"))
