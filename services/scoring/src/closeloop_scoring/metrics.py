"""Scoring's own Prometheus metrics (batch size and latency, and consumer lag, are the common
consumer's). Labels are bounded: headline segments come from configuration, never from data."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RESPONSES_AGGREGATED = Counter(
    "closeloop_scoring_responses_aggregated_total",
    "Response events (received, corrected, suspected) applied to the aggregates: `changed` "
    "when the version counted changed, `unchanged` for a redelivery or an older version",
    ["outcome"],
)
ROOT_CAUSES_APPLIED = Counter(
    "closeloop_scoring_root_causes_applied_total",
    "Case events (case.updated.v1) applied to the stored root causes: `changed` when a "
    "response's case version moved forward, `unchanged` for a redelivery or an older version",
    ["outcome"],
)

# Headline segments (`SCORING_HEADLINES`, at most 100): one series per configured headline. With
# no answers in its window a headline's NPS and interval are NaN and its responses 0, so the
# series stays present (an absent one means the worker is not running) and reads as "no data".
_HEADLINE = ["tenant", "headline"]
HEADLINE_NPS = Gauge(
    "closeloop_scoring_headline_nps",
    "NPS of a configured headline segment over its window; NaN without answers",
    _HEADLINE,
)
HEADLINE_RESPONSES = Gauge(
    "closeloop_scoring_headline_responses",
    "Answers counted in a headline segment's window (suspected ones left out)",
    _HEADLINE,
)
HEADLINE_CI_LOW = Gauge(
    "closeloop_scoring_headline_ci_low",
    "Lower bound of a headline NPS's 95 % interval (adjusted Wald); NaN without answers",
    _HEADLINE,
)
HEADLINE_CI_HIGH = Gauge(
    "closeloop_scoring_headline_ci_high",
    "Upper bound of a headline NPS's 95 % interval (adjusted Wald); NaN without answers",
    _HEADLINE,
)
HEADLINE_COMPUTED = Gauge(
    "closeloop_scoring_headline_computed_timestamp_seconds",
    "When a headline's figures were last computed (Unix time): alert when it falls behind",
    _HEADLINE,
)
