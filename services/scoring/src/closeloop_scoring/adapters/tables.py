"""The `scoring` schema: per tenant, segment and day, the counts of each NPS category."""

from __future__ import annotations

import sqlalchemy as sa

from closeloop_common.db import schema_metadata

SCHEMA = "scoring"
metadata = schema_metadata(SCHEMA)

# Days are the answer's UTC date. Any window (all time, rolling 30 days, a quarter) is a sum of
# days, so windows are decided on read and a late answer lands in the day it was given.
segment_daily = sa.Table(
    "segment_daily",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("dimension", sa.Text, primary_key=True),
    sa.Column("segment", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("promoters", sa.Integer, nullable=False, server_default="0"),
    sa.Column("passives", sa.Integer, nullable=False, server_default="0"),
    sa.Column("detractors", sa.Integer, nullable=False, server_default="0"),
)

# The counts of the rows a query selects, named like `NpsCounts`' fields: what both the handler
# (new totals for the event) and the read side (a window's counts) sum.
CATEGORY_TOTALS = (
    sa.func.coalesce(sa.func.sum(segment_daily.c.promoters), 0).label("promoters"),
    sa.func.coalesce(sa.func.sum(segment_daily.c.passives), 0).label("passives"),
    sa.func.coalesce(sa.func.sum(segment_daily.c.detractors), 0).label("detractors"),
)
