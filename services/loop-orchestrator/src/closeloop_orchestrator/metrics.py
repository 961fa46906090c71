"""The orchestrator's Prometheus metrics. Labels are bounded: case types, priorities, clocks,
alert kinds, transitions, loops (closed, not_closed) and percentiles are closed sets; no tenant,
owner or case id is a label."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CASES_OPENED = Counter(
    "closeloop_cases_opened_total", "Follow-up cases opened, by case type", ["case_type"]
)
OPEN_CASES = Gauge(
    "closeloop_cases_open",
    "Cases not yet resolved (open, in progress, contacted), by case type and priority; "
    "recounted every ORCHESTRATOR_GAUGE_INTERVAL_SECONDS",
    ["case_type", "priority"],
)
STRUCTURAL_ISSUES = Gauge(
    "closeloop_structural_issues",
    "Structural issues (the outer loop's backlog) by status, every tenant; recounted with "
    "closeloop_cases_open",
    ["status"],
)
CASE_TRANSITIONS = Counter(
    "closeloop_case_transitions_total",
    "Accepted case commands (claimed, contact_logged, resolved, ...)",
    ["transition"],
)
SLA_ALERTS = Counter(
    "closeloop_case_sla_alerts_total",
    "SLA alerts fired: warnings, breaches and escalations, per clock",
    ["clock", "kind"],
)
SLA_ALERT_LATENESS = Histogram(
    "closeloop_case_sla_alert_lateness_seconds",
    "How long after its due time an SLA timer fired",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
FIRST_CONTACT_SECONDS = Histogram(
    "closeloop_case_time_to_first_contact_seconds",
    "Time from opening a case to first reaching the customer, by case type",
    ["case_type"],
    buckets=(600, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600, 96 * 3600,
             7 * 24 * 3600),
)  # fmt: skip
FIRST_CONTACTS = Counter(
    "closeloop_case_first_contacts_total",
    "First reached contacts, by case type and whether they were within the first-contact SLA",
    ["case_type", "within_sla"],
)
FIRST_CONTACT_WITHIN_SLA_RATIO = Gauge(
    "closeloop_cases_first_contact_within_sla_ratio",
    "Share of the cases opened in the last 30 days whose first-contact clock has stopped or run "
    "out that were contacted in time; recounted with closeloop_cases_open",
)
REVIEW_SECTIONS_UNAVAILABLE = Counter(
    "closeloop_review_pack_sections_unavailable_total",
    "Sections of account review packs left empty because scoring did not answer them "
    "(nps, trend, response_rate, revenue_weight, drivers, health)",
    ["section"],
)

# The loop's impact (`service_layer/impact.py`): every tenant's cases opened in the last 90 days,
# recounted every ORCHESTRATOR_IMPACT_INTERVAL_SECONDS; `loop` is `closed` or `not_closed`
# (definitions in `domain/impact.py`). Undefined figures (no invitation, fewer than two score
# changes) are NaN.
_IMPACT = (
    "recounted every ORCHESTRATOR_IMPACT_INTERVAL_SECONDS over the cases opened in the last 90 days"
)
LOOP_CASES = Gauge(
    "closeloop_loop_cases",
    f"Cases whose loop is closed (reached and resolved) or not (counted once reached or past "
    f"their first-contact deadline); {_IMPACT}",
    ["loop"],
)
LOOP_RESURVEY_INVITATIONS = Gauge(
    "closeloop_loop_resurvey_invitations",
    f"Cases whose customer was invited to a survey after the case was opened; {_IMPACT}",
    ["loop"],
)
LOOP_RESURVEY_RESPONSES = Gauge(
    "closeloop_loop_resurvey_responses",
    f"Cases whose customer answered that re-survey; {_IMPACT}",
    ["loop"],
)
LOOP_RESURVEY_RESPONSE_RATIO = Gauge(
    "closeloop_loop_resurvey_response_ratio",
    f"Re-survey responses over re-survey invitations; {_IMPACT}",
    ["loop"],
)
LOOP_SCORE_CHANGE_MEAN = Gauge(
    "closeloop_loop_resurvey_score_change_mean",
    f"Mean of the re-survey score minus the case's score (points on the 0-10 scale); {_IMPACT}",
    ["loop"],
)
LOOP_RESPONSE_RATE_DIFFERENCE_P_VALUE = Gauge(
    "closeloop_loop_resurvey_response_rate_difference_p_value",
    f"Two-sided p-value of the two-proportion z-test of the re-survey response rates, closed "
    f"versus not closed; {_IMPACT}",
)
LOOP_SCORE_CHANGE_DIFFERENCE_P_VALUE = Gauge(
    "closeloop_loop_resurvey_score_change_difference_p_value",
    f"Two-sided p-value of Welch's t-test of the mean score changes, closed versus not closed; "
    f"{_IMPACT}",
)
LOOP_TIME_TO_FIRST_CONTACT = Gauge(
    "closeloop_loop_time_to_first_contact_seconds",
    f"Quantiles (0.5, 0.75, 0.9, 0.95; linear interpolation) of the time from opening a case to "
    f"first reaching the customer; {_IMPACT}",
    ["percentile"],
)
LOOP_FIRST_CONTACT_WITHIN_SLA_RATIO = Gauge(
    "closeloop_loop_first_contact_within_sla_ratio",
    f"Share of the cases reached or past their first-contact deadline that were reached by it, "
    f"by priority; {_IMPACT}",
    ["priority"],
)
