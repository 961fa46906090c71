"""Ingest's own Prometheus metrics. Labels are bounded: `source` is the source's kind
(`api`, `typeform`, ...), never a tenant's own source name."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERIES = Counter(
    "closeloop_ingest_deliveries_total",
    "Requests to ingest's write APIs and webhooks by source kind and outcome: accepted, "
    "suspected, corrected, duplicate, stale, conflict, ignored, fetch_queued, partial, or why "
    "refused (signature_missing, signature_invalid, timestamp_out_of_tolerance, unknown_source, "
    "payload_too_large, unsupported_content_type, invalid_payload, database_unavailable)",
    ["source", "outcome"],
)
RESPONSES = Counter(
    "closeloop_ingest_responses_total",
    "Responses judged by source kind and status (accepted, suspected, corrected, duplicate, "
    "stale, conflict, invalid)",
    ["source", "status"],
)
INVITATIONS = Counter(
    "closeloop_ingest_invitations_total",
    "Invitations recorded by outcome (accepted, duplicate, conflict, invalid)",
    ["outcome"],
)
FETCHES = Counter(
    "closeloop_ingest_fetches_total",
    "Vendor API fetches by source kind and outcome (accepted, ignored, retry, failed)",
    ["source", "outcome"],
)
GROUP_COMMIT_SIZE = Histogram(
    "closeloop_ingest_group_commit_requests",
    "Requests written per shared transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
