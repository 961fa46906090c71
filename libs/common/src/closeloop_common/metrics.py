"""Prometheus metrics shared by every service (one service per process, so no service label:
Prometheus adds `job`/`instance` when it scrapes)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

HTTP_REQUESTS = Counter(
    "closeloop_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "closeloop_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_CONSUMED = Counter(
    "closeloop_events_consumed_total",
    "Kafka records seen by a consumer, by outcome (processed, duplicate, skipped, dead_lettered)",
    ["group", "event_type", "outcome"],
)
HANDLER_FAILURES = Counter(
    "closeloop_event_handler_failures_total",
    "Handler attempts that raised",
    ["group", "event_type", "kind"],
)
CONSUMER_BATCH_DURATION = Histogram(
    "closeloop_consumer_batch_duration_seconds",
    "Time to handle one batch of records in one transaction, commit included",
    ["group"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_BATCH_SIZE = Histogram(
    "closeloop_consumer_batch_records",
    "Records per consumer batch (one transaction)",
    ["group"],
    buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
)
DEAD_LETTERS_DROPPED = Counter(
    "closeloop_dead_letters_dropped_total",
    "Records the broker refused for good on the dead-letter topic (logged with their offsets)",
    ["group", "reason"],
)
EVENT_AGE = Histogram(
    "closeloop_event_age_seconds",
    "Age of an event (its CloudEvents time) when handled; a batch of more than 100 events is "
    "sampled evenly (closeloop_events_consumed_total counts every event)",
    ["group", "event_type"],
    buckets=LATENCY_BUCKETS,
)
OUTBOX_PUBLISHED = Counter(
    "closeloop_outbox_published_total", "Events the outbox relay published", ["topic"]
)
OUTBOX_DELAY = Histogram(
    "closeloop_outbox_delay_seconds",
    "Time from outbox write to broker acknowledgement",
    buckets=LATENCY_BUCKETS,
)
OUTBOX_OLDEST_PENDING_AGE = Gauge(
    "closeloop_outbox_oldest_pending_age_seconds",
    "Age of the oldest outbox row not yet published (0 when none waits), set by every relay "
    "pass before it sends, so it keeps growing while the broker refuses: alert on it",
)
CONSUMER_LAG = Gauge(
    "closeloop_consumer_lag_records",
    "Records of a partition not yet handled by a consumer group: the partition's high watermark "
    "at the last fetch minus the group's committed offset; set after each commit and each empty "
    "fetch, removed when the partition is revoked",
    ["group", "topic", "partition"],
)
