"""NPS overview: the configured headline segments with their 95 % intervals and trend, answers and
the response rate, and the loop's measured impact (closed versus not closed)."""

from __future__ import annotations

from closeloop_devtools.dashboards.panels import Dashboard, Panel, Query, Row, Threshold, Variable

_HEADLINE = 'tenant=~"$tenant", headline=~"$headline"'
_NAME = "{{tenant}} · {{headline}}"
_NPS_COLOURS = (Threshold(None, "red"), Threshold(0, "orange"), Threshold(30, "green"))


def _per_headline(metric: str) -> str:
    """One series per headline, whichever scoring replica reports it: without the metric's name
    and the scraped instance (so a table's queries join on tenant and headline)."""
    return f"max by (tenant, headline) ({metric}{{{_HEADLINE}}})"


# Answers accepted over invitations recorded in the same rolling day, all tenants together.
_RESPONSE_RATE = (
    'sum(increase(closeloop_ingest_responses_total{status="accepted"}[1d]))'
    ' / sum(increase(closeloop_ingest_invitations_total{outcome="accepted"}[1d]))'
)

NPS_OVERVIEW = Dashboard(
    uid="closeloop-nps-overview",
    title="Closeloop / NPS overview",
    description="Headline NPS segments (SCORING_HEADLINES) with intervals and trend, answers, "
    "response rate, and the loop's impact.",
    variables=(
        Variable(
            "tenant",
            "Tenant",
            "label_values(closeloop_scoring_headline_nps, tenant)",
            "Tenants with configured headline segments",
        ),
        Variable(
            "headline",
            "Headline",
            'label_values(closeloop_scoring_headline_nps{tenant=~"$tenant"}, headline)',
            "Headline segments of the chosen tenants",
        ),
    ),
    items=(
        Row("Headline segments"),
        Panel(
            "Headline NPS",
            "NPS of each configured headline segment over its window (-100 to 100), recomputed "
            "every SCORING_HEADLINE_INTERVAL_SECONDS. Empty while the window has no answer.",
            (Query(_per_headline("closeloop_scoring_headline_nps"), _NAME),),
            unit="none",
            kind="gauge",
            min=-100,
            max=100,
            decimals=1,
            thresholds=_NPS_COLOURS,
        ),
        Panel(
            "Headline segments with 95 % intervals",
            "Each headline's NPS, the bounds of its 95 % interval (adjusted Wald) and the "
            "answers counted in its window. A wide interval means too few answers to compare.",
            (
                Query(_per_headline("closeloop_scoring_headline_nps"), "NPS"),
                Query(_per_headline("closeloop_scoring_headline_ci_low"), "95 % low"),
                Query(_per_headline("closeloop_scoring_headline_ci_high"), "95 % high"),
                Query(_per_headline("closeloop_scoring_headline_responses"), "Answers", "short"),
            ),
            unit="none",
            kind="table",
            decimals=1,
        ),
        Panel(
            "Headline NPS trend with 95 % interval",
            "Each headline's NPS over time with the bounds of its 95 % interval: a move that "
            "stays inside the earlier interval may be noise.",
            (
                Query(_per_headline("closeloop_scoring_headline_nps"), _NAME),
                Query(_per_headline("closeloop_scoring_headline_ci_low"), f"{_NAME} low"),
                Query(_per_headline("closeloop_scoring_headline_ci_high"), f"{_NAME} high"),
            ),
            unit="none",
            min=-100,
            max=100,
            width=16,
        ),
        Panel(
            "Answers in each headline's window",
            "Answers counted in each headline's window (suspected ones left out).",
            (Query(_per_headline("closeloop_scoring_headline_responses"), _NAME),),
            unit="short",
            width=8,
        ),
        Row("Answers and response rate"),
        Panel(
            "Response rate (last 24 h)",
            "Answers accepted over invitations recorded in the last 24 hours, all tenants "
            "together (a tenant's own rate is in scoring's API: response_rate).",
            (Query(_RESPONSE_RATE, "response rate"),),
            unit="percentunit",
            kind="stat",
            width=6,
            decimals=1,
        ),
        Panel(
            "Response rate trend (rolling 24 h)",
            "The same ratio over a rolling day, to see a survey channel drying up.",
            (Query(_RESPONSE_RATE, "response rate"),),
            unit="percentunit",
            width=18,
        ),
        Panel(
            "Answers received by status",
            "Answers ingest judged, per second: accepted, corrected, suspected (outside the "
            "NPS), duplicate, stale, conflict, invalid.",
            (
                Query(
                    "sum by (status) (rate(closeloop_ingest_responses_total[$__rate_interval]))",
                    "{{status}}",
                ),
            ),
            unit="cps",
            stacked=True,
        ),
        Panel(
            "Invitations recorded",
            "Survey invitations ingest recorded per second, by outcome: the response rate's "
            "denominator and the source of lack-of-response cases.",
            (
                Query(
                    "sum by (outcome) (rate(closeloop_ingest_invitations_total[$__rate_interval]))",
                    "{{outcome}}",
                ),
            ),
            unit="cps",
            stacked=True,
        ),
        Row("The loop's impact (cases opened in the last 90 days)"),
        Panel(
            "Re-survey response rate: loop closed vs not",
            "Share of re-surveyed customers who answered, for cases whose loop was closed "
            "(reached and resolved) and for the others.",
            (Query("max by (loop) (closeloop_loop_resurvey_response_ratio)", "{{loop}}"),),
            unit="percentunit",
            kind="bargauge",
            width=8,
            min=0,
            max=1,
        ),
        Panel(
            "Score change at re-survey: loop closed vs not",
            "Mean of the re-survey score minus the case's score (points on the 0-10 scale).",
            (Query("max by (loop) (closeloop_loop_resurvey_score_change_mean)", "{{loop}}"),),
            unit="none",
            kind="bargauge",
            width=8,
            decimals=2,
        ),
        Panel(
            "Is the difference real? (p-values)",
            "Two-sided p-values: response rates (two-proportion z-test) and score changes "
            "(Welch's t-test), closed versus not closed. Below 0.05: unlikely to be chance.",
            (
                Query(
                    "max(closeloop_loop_resurvey_response_rate_difference_p_value)",
                    "response rate",
                ),
                Query(
                    "max(closeloop_loop_resurvey_score_change_difference_p_value)", "score change"
                ),
            ),
            unit="none",
            kind="stat",
            width=8,
            decimals=3,
            thresholds=(Threshold(None, "green"), Threshold(0.05, "text")),
        ),
    ),
)
