"""scoring: the root causes of each response's case

Revision ID: 0006
Revises: 0005

Root-cause tags arrive with `case.updated.v1` on the cases topic, which scoring consumes from
this revision on; they are counted in `theme_daily` as themes `rc:<tag>`. Nothing existing
changes. On its first start after upgrading, scoring reads the cases topic from its first offset
(its consumer group has no offset there yet), so the root causes still on the topic are counted.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "root_causes",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("response_id", sa.Text, nullable=False),
        sa.Column("case_version", sa.Integer, nullable=False),
        sa.Column("tags", ARRAY(sa.Text), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "response_id", name="pk_root_causes"),
        schema="scoring",
    )


def downgrade() -> None:
    # The counts of the root causes (themes `rc:...`) go with the table they came from.
    op.execute("DELETE FROM scoring.theme_daily WHERE theme LIKE 'rc:%'")
    op.drop_table("root_causes", schema="scoring")
