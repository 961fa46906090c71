"""The `scoring` schema (see `domain/aggregation.py` for what is counted where).

- `responses`: per response, the version counted, its cell, local day, category, account,
  themes and whether it is suspected of being automated: the state that makes corrections and
  redeliveries exact, and the source of per-account figures.
- `root_causes`: per response, the root-cause tags of its case and the case version they are of
  (from `case.updated.v1`; kept whether or not the response has arrived yet, and counted in
  `theme_daily` as themes `rc:<tag>` whenever it has).
- `cells`: each combination of survey, segment attributes and scored custom attributes seen,
  numbered.
- `cell_daily`, `segment_daily`, `theme_daily`: counts per local day (in `SCORING_TIME_ZONE`) of
  a cell, of a single dimension's segment, and of a cell's theme.
- `invitations`: invitations counted (each once), for response rates.
- `account_weights`: revenue weight per account, for weighted B2B figures.
- `settings_applied`: settings the stored aggregates depend on (the time zone of their days).
- `headlines`: per configured headline segment, the last `nps.changed.v1` published (its NPS,
  time and the definition it was computed by), so a restart does not publish it again. Not
  emptied by a rebuild: it records what consumers were told.
Rows of counts hold only non-negative numbers; a row whose counts all fall to zero after a
correction is deleted, so a rebuild from the topic yields the same rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from closeloop_common.db import schema_metadata

SCHEMA = "scoring"
metadata = schema_metadata(SCHEMA)


def _counts(*, invitations: bool = True, suspected: bool = True) -> list[sa.Column[int]]:
    names = ["promoters", "passives", "detractors"]
    if suspected:
        names.append("suspected")
    if invitations:
        names.append("invitations")
    return [sa.Column(n, sa.Integer, nullable=False, server_default="0") for n in names]


cells = sa.Table(
    "cells",
    metadata,
    sa.Column("cell_id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("survey_id", sa.Text, nullable=False),
    sa.Column("product", sa.Text),
    sa.Column("region", sa.Text),
    sa.Column("channel", sa.Text),
    sa.Column("touchpoint", sa.Text),
    sa.Column("attributes", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.UniqueConstraint(
        "tenant_id",
        "survey_id",
        "product",
        "region",
        "channel",
        "touchpoint",
        "attributes",
        name="uq_cells_combination",
        postgresql_nulls_not_distinct=True,
    ),
)

responses = sa.Table(
    "responses",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("response_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("cell_id", sa.BigInteger, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("account_id", sa.Text),
    sa.Column("themes", ARRAY(sa.Text), nullable=False),
    sa.Column("suspected", sa.Boolean, nullable=False),
    sa.Index(
        "ix_responses_account_day",
        "tenant_id",
        "account_id",
        "day",
        postgresql_where=sa.text("account_id IS NOT NULL"),
    ),
)

root_causes = sa.Table(
    "root_causes",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("response_id", sa.Text, primary_key=True),
    sa.Column("case_version", sa.Integer, nullable=False),
    sa.Column("tags", ARRAY(sa.Text), nullable=False),
)

cell_daily = sa.Table(
    "cell_daily",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("cell_id", sa.BigInteger, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    *_counts(),
)

segment_daily = sa.Table(
    "segment_daily",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("dimension", sa.Text, primary_key=True),
    sa.Column("segment", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    *_counts(),
)

theme_daily = sa.Table(
    "theme_daily",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("cell_id", sa.BigInteger, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("theme", sa.Text, primary_key=True),
    *_counts(invitations=False, suspected=False),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("invitation_id", sa.Text, primary_key=True),
    sa.Column("cell_id", sa.BigInteger, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("account_id", sa.Text),
    sa.Index(
        "ix_invitations_account_day",
        "tenant_id",
        "account_id",
        "day",
        postgresql_where=sa.text("account_id IS NOT NULL"),
    ),
)

account_weights = sa.Table(
    "account_weights",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("account_id", sa.Text, primary_key=True),
    sa.Column("revenue_weight", sa.Float, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

settings_applied = sa.Table(
    "settings_applied",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

headlines = sa.Table(
    "headlines",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("nps", sa.Float),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
)

AGGREGATES = (cell_daily, segment_daily, theme_daily)
"""Tables a rebuild empties (with `responses`, `root_causes`, `invitations` and `cells`)."""
