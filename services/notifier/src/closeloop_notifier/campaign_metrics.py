"""Prometheus metrics of "you said, we did" campaigns. Labels are bounded (statuses only): a
campaign's own progress is in its report (`GET /v1/campaigns/{id}`), not in a label.

The gauges are recounted from the database by every replica's campaign expander (a few times a
minute); each replica reports the same totals, so aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
