"""Pipeline health: the services, ingest's deliveries and refusals by source and reason, the
outboxes, consumer lag per group and partition, dead letters, and notification outcomes."""

from __future__ import annotations

from closeloop_common.services import SERVICES
from closeloop_devtools.dashboards.panels import (
    Dashboard,
    Panel,
    Query,
    Row,
    Threshold,
    ValueText,
)

# Ingest outcomes that are not refusals: a judged response, or a delivery understood and set
# aside. Every other outcome is a refusal reason; the same list is in
# deploy/prometheus/rules/closeloop.rules.yml (a test keeps them in step).
INGEST_HANDLED_OUTCOMES = (
    "accepted|suspected|corrected|duplicate|stale|conflict|ignored|fetch_queued|partial"
)
SERVICE_MATCH = "|".join(s.directory for s in SERVICES)
_RATE = "$__rate_interval"


def _rate_by(labels: str, metric: str) -> str:
    return f"sum by ({labels}) (rate({metric}[{_RATE}]))"


def _all_rate(metric: str) -> str:
    """The total rate, 0 while the counter has no series yet (nothing happened since start):
    a quiet pipeline reads as 0, not as "no data"."""
    return f"sum(rate({metric}[{_RATE}])) or vector(0)"


PIPELINE_HEALTH = Dashboard(
    uid="closeloop-pipeline-health",
    title="Closeloop / Pipeline health",
    description="Services, ingest by source and reason, outboxes, consumer lag, dead letters and "
    "notification outcomes.",
    time_from="now-6h",
    items=(
        Row("Services"),
        Panel(
            "Services up",
            "Whether Prometheus can scrape each service (CloseloopServiceDown after 2 minutes).",
            (Query(f'up{{service=~"{SERVICE_MATCH}"}}', "{{service}} {{instance}}"),),
            unit="none",
            kind="stat",
            width=8,
            thresholds=(Threshold(None, "red"), Threshold(1, "green")),
            value_texts=(ValueText(0, "DOWN", "red"), ValueText(1, "UP", "green")),
        ),
        Panel(
            "HTTP requests by service and status",
            "Requests served per second, by service and HTTP status.",
            (
                Query(
                    _rate_by("service, status", "closeloop_http_requests_total"),
                    "{{service}} {{status}}",
                ),
            ),
            unit="reqps",
            width=8,
        ),
        Panel(
            "HTTP latency p99 by service",
            "99th percentile of the time to serve a request, by service.",
            (
                Query(
                    "histogram_quantile(0.99, "
                    + _rate_by("service, le", "closeloop_http_request_duration_seconds_bucket")
                    + ")",
                    "{{service}}",
                ),
            ),
            unit="s",
            width=8,
        ),
        Row("Ingest"),
        Panel(
            "Deliveries by source and outcome",
            "Webhook deliveries and API writes per second, by source kind and outcome "
            "(accepted, duplicate, ... or the refusal reason).",
            (
                Query(
                    _rate_by("source, outcome", "closeloop_ingest_deliveries_total"),
                    "{{source}} {{outcome}}",
                ),
            ),
            unit="reqps",
            stacked=True,
        ),
        Panel(
            "Refusals by source and reason",
            "Deliveries refused per second, by source kind and reason: signature_*, "
            "timestamp_out_of_tolerance, unknown_source, payload_too_large, "
            "unsupported_content_type, invalid_payload, database_unavailable.",
            (
                Query(
                    _rate_by(
                        "source, outcome",
                        "closeloop_ingest_deliveries_total"
                        f'{{outcome!~"{INGEST_HANDLED_OUTCOMES}"}}',
                    ),
                    "{{source}} {{outcome}}",
                ),
            ),
            unit="reqps",
            stacked=True,
        ),
        Panel(
            "Refused share by source (10 min)",
            "Share of each source kind's deliveries refused over 10 minutes; "
            "CloseloopIngestErrorRatioHigh fires above 5 % (the dashed line).",
            (Query("closeloop:ingest_delivery_errors:ratio_rate10m", "{{source}}"),),
            unit="percentunit",
            min=0,
            thresholds=(Threshold(None, "green"), Threshold(0.05, "red")),
        ),
        Panel(
            "Vendor API fetches by source and outcome",
            "Fetches of responses from survey tools' APIs per second (accepted, ignored, retry, "
            "failed).",
            (
                Query(
                    _rate_by("source, outcome", "closeloop_ingest_fetches_total"),
                    "{{source}} {{outcome}}",
                ),
                Query(_all_rate("closeloop_ingest_fetches_total"), "all"),
            ),
            unit="reqps",
        ),
        Row("Outboxes and consumers"),
        Panel(
            "Outbox delay p99 by service",
            "99th percentile of the time from an outbox write to the broker's acknowledgement "
            "(5 minutes); CloseloopOutboxLagHigh fires above 30 s (the dashed line). Empty "
            "while nothing is published.",
            (Query("closeloop:outbox_delay_seconds:p99_rate5m", "{{service}}"),),
            unit="s",
            thresholds=(Threshold(None, "green"), Threshold(30, "red")),
        ),
        Panel(
            "Oldest unpublished event by service",
            "How long the oldest event not yet published has waited in each service's outbox "
            "(0 when none waits); it keeps growing while the broker refuses. "
            "CloseloopOutboxLagHigh fires when it stays above a minute (the dashed line).",
            (
                Query(
                    "max by (service) (closeloop_outbox_oldest_pending_age_seconds)",
                    "{{service}}",
                ),
            ),
            unit="s",
            min=0,
            thresholds=(Threshold(None, "green"), Threshold(60, "red")),
        ),
        Panel(
            "Events published by topic",
            "Events the outbox relays published per second, by topic.",
            (Query(_rate_by("topic", "closeloop_outbox_published_total"), "{{topic}}"),),
            unit="cps",
            stacked=True,
        ),
        Panel(
            "Consumer lag per group",
            "Records of the group's partitions not yet handled (high watermark minus committed "
            "offset, each partition once); CloseloopConsumerLagGrowing fires when it is above "
            "1000 and growing for 15 minutes.",
            (Query("closeloop:consumer_lag_records:sum_by_group", "{{group}}"),),
            unit="short",
            thresholds=(Threshold(None, "green"), Threshold(1000, "orange")),
        ),
        Panel(
            "Consumer lag per group and partition",
            "Records not yet handled, per consumer group, topic and partition: one hot "
            "partition points at a hot key or a stuck record.",
            (
                Query(
                    "max by (group, topic, partition) (closeloop_consumer_lag_records)",
                    "{{group}} {{topic}}/{{partition}}",
                ),
            ),
            unit="short",
        ),
        Panel(
            "Events consumed by group and outcome",
            "Records seen per second, by consumer group and outcome (processed, duplicate, "
            "skipped, dead_lettered).",
            (
                Query(
                    _rate_by("group, outcome", "closeloop_events_consumed_total"),
                    "{{group}} {{outcome}}",
                ),
            ),
            unit="cps",
        ),
        Panel(
            "Event age when handled (p95)",
            "95th percentile of an event's age when its handler ran, by group: the loop's "
            "latency per hop.",
            (
                Query(
                    "histogram_quantile(0.95, "
                    + _rate_by("group, le", "closeloop_event_age_seconds_bucket")
                    + ")",
                    "{{group}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Handler failures",
            "Handler attempts that raised per second, by group and kind (transient: an outage, "
            "retried; error: retried, then dead-lettered).",
            (
                Query(
                    _rate_by("group, kind", "closeloop_event_handler_failures_total"),
                    "{{group}} {{kind}}",
                ),
                Query(_all_rate("closeloop_event_handler_failures_total"), "all"),
            ),
            unit="cps",
        ),
        Panel(
            "Dead letters (per 15 min)",
            "Events put on the dead-letter topic in the 15 minutes before each point, by group "
            "and event type, and dead letters the broker refused (dropped: only in the logs).",
            (
                Query(
                    "sum by (group, event_type) (increase("
                    'closeloop_events_consumed_total{outcome="dead_lettered"}[15m]))',
                    "{{group}} {{event_type}}",
                ),
                Query(
                    "sum by (group, reason) (increase(closeloop_dead_letters_dropped_total[15m]))",
                    "dropped: {{group}} {{reason}}",
                ),
                Query(
                    'sum(increase(closeloop_events_consumed_total{outcome="dead_lettered"}[15m])) '
                    "or vector(0)",
                    "all",
                ),
            ),
            unit="short",
        ),
        Row("Notifications"),
        Panel(
            "SMTP server",
            "Whether the last SMTP attempt found the server down (unreachable) or refusing our "
            "credentials, TLS or From address (misconfigured). Either holds the email queue.",
            (
                Query("max(closeloop_notifier_smtp_unreachable)", "unreachable"),
                Query("max(closeloop_notifier_smtp_misconfigured)", "misconfigured"),
            ),
            unit="none",
            kind="stat",
            width=6,
            thresholds=(Threshold(None, "green"), Threshold(1, "red")),
            value_texts=(ValueText(0, "OK", "green"), ValueText(1, "FAILING", "red")),
        ),
        Panel(
            "Notification outcomes by channel",
            "Messages per second by channel (email, webhook) and outcome: sent, failed, "
            "suppressed, discarded, no_recipient, deferred, retry, outage.",
            (
                Query(
                    _rate_by("channel, outcome", "closeloop_notifier_messages_total"),
                    "{{channel}} {{outcome}}",
                ),
            ),
            unit="cps",
            width=9,
        ),
        Panel(
            "Notification outcomes by kind",
            "Messages per second by kind (apology, thank-you, owner notices, campaign, ...) and "
            "outcome.",
            (
                Query(
                    _rate_by("kind, outcome", "closeloop_notifier_messages_total"),
                    "{{kind}} {{outcome}}",
                ),
            ),
            unit="cps",
            width=9,
        ),
        Panel(
            "Messages waiting",
            "Messages not sent yet, by status (pending includes deferred and delayed ones).",
            (Query("max by (status) (closeloop_notifier_messages_waiting)", "{{status}}"),),
            unit="short",
            width=8,
        ),
        Panel(
            "Send duration p99 by channel",
            "99th percentile of the time to hand one message to its channel (SMTP conversation "
            "or webhook call).",
            (
                Query(
                    "histogram_quantile(0.99, "
                    + _rate_by("channel, le", "closeloop_notifier_send_duration_seconds_bucket")
                    + ")",
                    "{{channel}}",
                ),
            ),
            unit="s",
            width=8,
        ),
        Panel(
            "Campaign messages by status",
            "Messages of the change-summary campaigns not finished yet, by status.",
            (Query("max by (status) (closeloop_notifier_campaign_messages)", "{{status}}"),),
            unit="short",
            width=8,
        ),
    ),
)
