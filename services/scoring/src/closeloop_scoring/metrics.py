"""Scoring's own Prometheus metrics (batch size and latency, and consumer lag, are the common
consumer's). Labels are bounded: headline segments come from configuration, never from data."""

from __future__ import annotations

from prometheus_client import Counter

RESPONSES_AGGREGATED = Counter(
    "closeloop_scoring_responses_aggregated_total",
    "Response events (received, corrected, suspected) applied to the aggregates: `changed` "
    "when the version counted changed, `unchanged` for a redelivery or an older version",
    ["outcome"],
)
