"""The notifier's own Prometheus metrics: SMTP delivery outcomes and the two alert gauges.

Alert on `closeloop_notifier_smtp_unreachable == 1` (the mail server is down: the queue waits)
and `closeloop_notifier_smtp_misconfigured == 1` (it refuses our credentials, TLS or From
address: the queue is held until an operator fixes the settings), each for a few minutes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELIVERIES = Counter(
    "closeloop_notifier_deliveries_total",
    "SMTP delivery attempts by outcome (sent, retry, failed, suppressed, outage, misconfigured)",
    ["outcome"],
)
SMTP_UNREACHABLE = Gauge(
    "closeloop_notifier_smtp_unreachable",
    "1 while the last SMTP attempt found the server down or not answering; the queue waits",
)
SMTP_MISCONFIGURED = Gauge(
    "closeloop_notifier_smtp_misconfigured",
    "1 while the SMTP server refuses the notifier's credentials, TLS or From address; "
    "the queue is held",
)
