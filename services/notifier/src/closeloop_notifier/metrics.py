"""The notifier's own Prometheus metrics. Labels are bounded: kind (ten values), channel
(email, webhook), outcome (below), status.

Campaign gauges are recounted from the database by every replica's campaign expander (a few
times a minute); each replica reports the same totals, so aggregate them with `max`, not `sum`.
A campaign's own progress is in its report (`GET /v1/campaigns/{id}`), not in a label.

Alert on `closeloop_notifier_smtp_unreachable == 1` (the mail server is down: the queue waits)
and `closeloop_notifier_smtp_misconfigured == 1` (it refuses our credentials, TLS or From
address: the queue is held until an operator fixes the settings), each for a few minutes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "closeloop_notifier_messages_total",
    "Messages by kind, channel and outcome: sent, failed (for good), suppressed (opted out or "
    "over the frequency cap), discarded (a draft thrown away), no_recipient, deferred (quiet "
    "hours), retry (a temporary failure), outage (the channel was down: not counted as an "
    "attempt)",
    ["kind", "channel", "outcome"],
)
SEND_SECONDS = Histogram(
    "closeloop_notifier_send_duration_seconds",
    "Time to hand one message to its channel (SMTP conversation or webhook call)",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DRAFTS_AWAITING = Gauge(
    "closeloop_notifier_drafts_awaiting_approval",
    "Customer replies held as drafts until their owner approves or edits them",
)
MESSAGES_WAITING = Gauge(
    "closeloop_notifier_messages_waiting",
    "Messages not sent yet, by status (pending includes those deferred or delayed)",
    ["status"],
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

# -- "you said, we did" campaigns ------------------------------------------------------------

CAMPAIGNS_OPENED = Counter(
    "closeloop_notifier_campaigns_opened_total",
    "Change-summary campaigns opened (a redelivered event opens none)",
)
CAMPAIGN_RECIPIENTS = Counter(
    "closeloop_notifier_campaign_recipients_total",
    "Campaign messages stored by expansion, by initial status "
    "(pending, suppressed, no_recipient, failed)",
    ["status"],
)
CAMPAIGNS = Gauge(
    "closeloop_notifier_campaigns",
    "Campaigns by status (expanding, sending, paused, done, cancelled)",
    ["status"],
)
CAMPAIGN_MESSAGES = Gauge(
    "closeloop_notifier_campaign_messages",
    "Messages of the campaigns not finished yet (expanding, sending, paused), by status",
    ["status"],
)
