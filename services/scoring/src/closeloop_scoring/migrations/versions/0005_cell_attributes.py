"""scoring: custom attributes in cells

Revision ID: 0005
Revises: 0004

A cell is now also its scored custom attributes (`SCORING_ATTRIBUTES`): `attributes` holds them
as a JSON object (`{}` for none, which every existing cell is), and the combination that must be
unique includes it. Existing counts stay valid; responses counted before an attribute was
configured are not in its figures until a rebuild.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = "scoring"


def upgrade() -> None:
    op.add_column(
        "cells",
        sa.Column("attributes", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema=S,
    )
    op.execute("ALTER TABLE scoring.cells DROP CONSTRAINT uq_cells_combination")
    op.execute(
        "ALTER TABLE scoring.cells ADD CONSTRAINT uq_cells_combination UNIQUE NULLS NOT DISTINCT "
        "(tenant_id, survey_id, product, region, channel, touchpoint, attributes)"
    )


def downgrade() -> None:
    # Cells that differ only in their attributes cannot be told apart without them, and merging
    # their counts is a rebuild's job: if any exist, what scoring counted is emptied (run
    # `closeloop-scoring rebuild` after downgrading); otherwise nothing is lost.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM scoring.cells WHERE attributes <> '{}'::jsonb) "
        "THEN TRUNCATE scoring.cell_daily, scoring.segment_daily, scoring.theme_daily, "
        "scoring.responses, scoring.invitations, scoring.cells; END IF; END $$"
    )
    op.execute("ALTER TABLE scoring.cells DROP CONSTRAINT uq_cells_combination")
    op.drop_column("cells", "attributes", schema=S)
    op.execute(
        "ALTER TABLE scoring.cells ADD CONSTRAINT uq_cells_combination UNIQUE NULLS NOT DISTINCT "
        "(tenant_id, survey_id, product, region, channel, touchpoint)"
    )
