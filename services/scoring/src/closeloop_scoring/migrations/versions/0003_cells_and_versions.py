"""scoring: responses by version, cells of segment attributes, counts per local day, invitations

Revision ID: 0003
Revises: 0002

The counts of 0001 had no record of which response they came from, so a correction could not
take its old contribution back. They are dropped: after upgrading, rebuild the aggregates from
the responses topic (`closeloop-scoring rebuild`, see the README).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "scoring"


def _counts(*names: str) -> list[sa.Column[int]]:
    return [sa.Column(n, sa.Integer, nullable=False, server_default="0") for n in names]


def upgrade() -> None:
    op.drop_table("segment_daily", schema=S)
    op.create_table(
        "cells",
        sa.Column("cell_id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("survey_id", sa.Text, nullable=False),
        sa.Column("product", sa.Text),
        sa.Column("region", sa.Text),
        sa.Column("channel", sa.Text),
        sa.Column("touchpoint", sa.Text),
        schema=S,
    )
    # One row per combination, a missing attribute included (NULLS NOT DISTINCT: PostgreSQL 15).
    op.execute(
        "ALTER TABLE scoring.cells ADD CONSTRAINT uq_cells_combination UNIQUE NULLS NOT DISTINCT "
        "(tenant_id, survey_id, product, region, channel, touchpoint)"
    )
    op.create_table(
        "responses",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("response_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("cell_id", sa.BigInteger, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text),
        sa.Column("themes", ARRAY(sa.Text), nullable=False),
        sa.Column("suspected", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "response_id", name="pk_responses"),
        schema=S,
    )
    op.create_index(
        "ix_responses_account_day",
        "responses",
        ["tenant_id", "account_id", "day"],
        schema=S,
        postgresql_where=sa.text("account_id IS NOT NULL"),
    )
    op.create_table(
        "cell_daily",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("cell_id", sa.BigInteger, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        *_counts("promoters", "passives", "detractors", "suspected", "invitations"),
        sa.PrimaryKeyConstraint("tenant_id", "cell_id", "day", name="pk_cell_daily"),
        schema=S,
    )
    op.create_table(
        "segment_daily",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("dimension", sa.Text, nullable=False),
        sa.Column("segment", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        *_counts("promoters", "passives", "detractors", "suspected", "invitations"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "dimension", "segment", "day", name="pk_segment_daily"
        ),
        schema=S,
    )
    op.create_table(
        "theme_daily",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("cell_id", sa.BigInteger, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("theme", sa.Text, nullable=False),
        *_counts("promoters", "passives", "detractors"),
        sa.PrimaryKeyConstraint("tenant_id", "cell_id", "day", "theme", name="pk_theme_daily"),
        schema=S,
    )
    op.create_table(
        "invitations",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("invitation_id", sa.Text, nullable=False),
        sa.Column("cell_id", sa.BigInteger, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("account_id", sa.Text),
        sa.PrimaryKeyConstraint("tenant_id", "invitation_id", name="pk_invitations"),
        schema=S,
    )
    op.create_index(
        "ix_invitations_account_day",
        "invitations",
        ["tenant_id", "account_id", "day"],
        schema=S,
        postgresql_where=sa.text("account_id IS NOT NULL"),
    )
    op.create_table(
        "account_weights",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("revenue_weight", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "account_id", name="pk_account_weights"),
        schema=S,
    )
    op.create_table(
        "settings_applied",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        schema=S,
    )


def downgrade() -> None:
    for table in (
        "settings_applied",
        "account_weights",
        "invitations",
        "theme_daily",
        "segment_daily",
        "cell_daily",
        "responses",
        "cells",
    ):
        op.drop_table(table, schema=S)
    op.create_table(
        "segment_daily",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("dimension", sa.Text, nullable=False),
        sa.Column("segment", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        *_counts("promoters", "passives", "detractors"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "dimension", "segment", "day", name="pk_segment_daily"
        ),
        schema=S,
    )
