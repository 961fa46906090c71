"""Loop health: open cases by type and priority (the backlog), SLA warnings, breaches and
escalations, time to first contact, and the owners' work."""

from __future__ import annotations

from closeloop_devtools.dashboards.panels import Dashboard, Panel, Query, Row, Threshold

# Every orchestrator replica recounts the same gauges: one value per label set, not a sum.
_OPEN = "max by (case_type, priority) (closeloop_cases_open)"
_RATIO_COLOURS = (Threshold(None, "red"), Threshold(0.8, "orange"), Threshold(0.95, "green"))


def _quantile(q: float, window: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) "
        f"(rate(closeloop_case_time_to_first_contact_seconds_bucket[{window}])))"
    )


LOOP_HEALTH = Dashboard(
    uid="closeloop-loop-health",
    title="Closeloop / Loop health",
    description="Open cases (the backlog), structural issues by status, SLA warnings, breaches "
    "and escalations, time to first contact, and the owners' work.",
    time_from="now-7d",
    items=(
        Row("Open cases (the backlog)"),
        Panel(
            "Open cases",
            "Cases not yet resolved (open, in progress, contacted), all types and priorities: "
            "the case backlog. Recounted every ORCHESTRATOR_GAUGE_INTERVAL_SECONDS.",
            (Query(f"sum({_OPEN})", "open cases"),),
            unit="short",
            kind="stat",
            width=4,
        ),
        Panel(
            "Replies awaiting approval",
            "Customer replies held as drafts until their owner approves or edits them.",
            (Query("max(closeloop_notifier_drafts_awaiting_approval)", "drafts"),),
            unit="short",
            kind="stat",
            width=4,
        ),
        Panel(
            "Open cases by type and priority",
            "Cases not yet resolved, one bar per case type and priority.",
            (Query(_OPEN, "{{case_type}} · {{priority}}"),),
            unit="short",
            kind="bargauge",
            width=16,
        ),
        Panel(
            "Open cases by type",
            "Cases not yet resolved over time, stacked by case type (detractor, passive, "
            "promoter, no_response).",
            (Query(f"sum by (case_type) ({_OPEN})", "{{case_type}}"),),
            unit="short",
            stacked=True,
            width=8,
        ),
        Panel(
            "Open cases by priority",
            "Cases not yet resolved over time, stacked by priority (low, normal, high, urgent).",
            (Query(f"sum by (priority) ({_OPEN})", "{{priority}}"),),
            unit="short",
            stacked=True,
            width=8,
        ),
        Panel(
            "Cases opened per hour",
            "Follow-up cases opened in the hour before each point, by case type.",
            (
                Query(
                    "sum by (case_type) (increase(closeloop_cases_opened_total[1h]))",
                    "{{case_type}}",
                ),
            ),
            unit="short",
            stacked=True,
            width=8,
        ),
        Row("Structural issues (the outer loop's backlog)"),
        Panel(
            "Structural issues by status",
            "What many customers complain about, as issues in the backlog (/v1/issues): "
            "proposed, prioritised and in progress are open; done and rejected were decided "
            "and their customers told. Every tenant; recounted with the open cases.",
            (Query("max by (status) (closeloop_structural_issues)", "{{status}}"),),
            unit="short",
            kind="bargauge",
            width=24,
        ),
        Row("SLA"),
        Panel(
            "SLA warnings and breaches per hour",
            "SLA timers fired in the hour before each point, by clock (first_contact, "
            "resolution) and kind: a warning when 75 % of the time is used, a breach at the "
            "deadline.",
            (
                Query(
                    "sum by (clock, kind) "
                    '(increase(closeloop_case_sla_alerts_total{kind=~"warning|breach"}[1h]))',
                    "{{clock}} {{kind}}",
                ),
            ),
            unit="short",
            width=8,
        ),
        Panel(
            "Escalations per hour",
            "Escalations after a breach (team lead, then manager) in the hour before each "
            "point, by clock.",
            (
                Query(
                    "sum by (clock) "
                    '(increase(closeloop_case_sla_alerts_total{kind="escalation"}[1h]))',
                    "{{clock}}",
                ),
            ),
            unit="short",
            width=8,
        ),
        Panel(
            "SLA breaches / cases opened (6 h)",
            "Breaches of the last 6 hours over the cases opened in them, by clock; "
            "CloseloopSlaBreachRateHigh fires above 10 % (the dashed line).",
            (Query("closeloop:case_sla_breach_ratio:6h", "{{clock}}"),),
            unit="percentunit",
            width=8,
            min=0,
            thresholds=(Threshold(None, "green"), Threshold(0.1, "red")),
        ),
        Panel(
            "First contact in time (30 days)",
            "Share of the cases of the last 30 days whose first-contact clock has stopped or "
            "run out that were contacted in time.",
            (Query("max(closeloop_cases_first_contact_within_sla_ratio)", "in time"),),
            unit="percentunit",
            kind="stat",
            width=4,
            decimals=1,
            thresholds=_RATIO_COLOURS,
        ),
        Panel(
            "First contact in time by priority (90 days)",
            "Share of the cases reached or past their first-contact deadline that were "
            "reached by it, by priority (the loop's impact figures).",
            (
                Query(
                    "max by (priority) (closeloop_loop_first_contact_within_sla_ratio)",
                    "{{priority}}",
                ),
            ),
            unit="percentunit",
            kind="bargauge",
            width=8,
            min=0,
            max=1,
            thresholds=_RATIO_COLOURS,
        ),
        Panel(
            "First contacts per hour: in time vs late",
            "First reached contacts in the hour before each point, within the first-contact "
            "SLA (true) or after it (false).",
            (
                Query(
                    "sum by (within_sla) (increase(closeloop_case_first_contacts_total[1h]))",
                    "within SLA: {{within_sla}}",
                ),
            ),
            unit="short",
            stacked=True,
            width=12,
        ),
        Panel(
            "Time to first contact",
            "Median and 90th percentile of the time from opening a case to first reaching the "
            "customer, over the contacts of the last 6 hours.",
            (
                Query(_quantile(0.5, "6h"), "median"),
                Query(_quantile(0.9, "6h"), "90th percentile"),
            ),
            unit="s",
            width=12,
        ),
        Panel(
            "Time to first contact, 90 days",
            "Quantiles of the time to first contact over the cases opened in the last 90 days.",
            (
                Query(
                    "max by (percentile) (closeloop_loop_time_to_first_contact_seconds)",
                    "p{{percentile}}",
                ),
            ),
            unit="s",
            kind="bargauge",
            width=12,
        ),
        Panel(
            "SLA timers: how late they fire",
            "99th percentile of the time between an SLA timer's due time and its firing: the "
            "watcher's health (seconds are normal, minutes are not).",
            (
                Query(
                    "histogram_quantile(0.99, sum by (le) "
                    "(rate(closeloop_case_sla_alert_lateness_seconds_bucket[$__rate_interval])))",
                    "p99",
                ),
            ),
            unit="s",
            width=12,
        ),
        Row("Owners' work"),
        Panel(
            "Case commands per hour",
            "Accepted case commands in the hour before each point, by transition (claimed, "
            "contact_logged, resolved, reopened, ...).",
            (
                Query(
                    "sum by (transition) (increase(closeloop_case_transitions_total[1h]))",
                    "{{transition}}",
                ),
            ),
            unit="short",
            stacked=True,
            width=24,
        ),
    ),
)
