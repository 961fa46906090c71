"""The shipped Prometheus configuration against the running services: a real `prometheus` on
127.0.0.1 (a free port, data in a temporary folder) scrapes the four service processes, loads
every shipped rule, shows a posted detractor in the ingest and case series, and fires
CloseloopSmtpUnreachable while the SMTP sink is down.

What differs from the shipped files (closeloop_devtools.prometheus): the targets are this
stack's processes, the scrape and evaluation intervals are 1 s, and CloseloopSmtpUnreachable's
`for:` is 2 s instead of 5 minutes; its expression, labels and annotations are the shipped ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from closeloop_common.services import SERVICES, service
from closeloop_devtools.mailsink import MailSink, read_mailbox
from closeloop_devtools.prometheus import Prometheus
from closeloop_devtools.stack import Stack
from tests.binaries import required_binary
from tests.e2e.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "prometheus"
SMTP_ALERT = "CloseloopSmtpUnreachable"


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(
        binary=required_binary("prometheus"),
        workdir=tmp_path,
        targets={s.directory: stack.url(s.name).removeprefix("http://") for s in SERVICES},
        alert_for={SMTP_ALERT: "2s"},
        shipped=SHIPPED,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def a_detractor(email: str) -> dict[str, Any]:
    return {
        "response_id": f"prom-{uuid.uuid4().hex[:10]}",
        "survey_id": "relationship-2026",
        "customer": {"id": f"cust-{uuid.uuid4().hex[:6]}", "email": email, "locale": "en"},
        "account_id": "acct-prometheus",
        "score": 1,
        "comment": "Nobody answered my ticket.",
        "answered_at": datetime.now(UTC).isoformat(),
    }


def total(prometheus: Prometheus, expr: str) -> float:
    """The value of a `sum(...)` query; 0 while no series exists (a counter not yet counted)."""
    found = prometheus.query(expr)
    return next(iter(found.values()), 0.0)


def test_prometheus_sees_a_detractor_and_fires_the_smtp_outage_alert(
    stack: Stack,
    smtp_sink: MailSink,
    maildir: Path,
    prometheus: Prometheus,
    bearer: Callable[..., dict[str, str]],
) -> None:
    # Every shipped rule loads in a real server.
    shipped_rules = yaml.safe_load((SHIPPED / "rules" / "closeloop.rules.yml").read_text())
    names = {r.get("alert") or r["record"] for g in shipped_rules["groups"] for r in g["rules"]}
    assert {r["name"] for r in prometheus.rules()} == names

    # Every service is scraped, with its `service` label.
    def all_up() -> dict[str, float] | None:
        up = {dict(k)["service"]: v for k, v in prometheus.query('up{job="closeloop"}').items()}
        return up if len(up) == len(SERVICES) and set(up.values()) == {1.0} else None

    assert set(eventually(all_up, what="every service scraped")) == {s.directory for s in SERVICES}
    assert total(prometheus, "sum(closeloop_notifier_smtp_unreachable)") == 0

    accepted = 'sum(closeloop_ingest_responses_total{source="api", status="accepted"})'
    opened = 'sum(closeloop_cases_opened_total{case_type="detractor"})'
    before = (total(prometheus, accepted), total(prometheus, opened))

    tenant = f"prom-{uuid.uuid4().hex[:10]}"
    with httpx.Client(headers=bearer(tenant, "responses:write"), timeout=10) as client:
        first = client.post(f"{stack.url('ingest')}/v1/responses", json=a_detractor("a@x.test"))
        assert first.status_code == 202, first.text

        def counted() -> tuple[float, float] | None:
            # Each service is scraped at its own moment: wait for both.
            now = (total(prometheus, accepted), total(prometheus, opened))
            return now if now[0] > before[0] and now[1] > before[1] else None

        after = eventually(counted, what="the detractor's answer and case in Prometheus")
        assert after == (before[0] + 1, before[1] + 1)

        # The mail server goes down; the next case's emails find it so.
        customer = f"outage-{uuid.uuid4().hex[:8]}@x.test"
        smtp_sink.stop()
        try:
            second = client.post(f"{stack.url('ingest')}/v1/responses", json=a_detractor(customer))
            assert second.status_code == 202, second.text

            def smtp_alert_firing() -> dict[str, Any] | None:
                return next(
                    (
                        a
                        for a in prometheus.alerts()
                        if a["labels"]["alertname"] == SMTP_ALERT and a["state"] == "firing"
                    ),
                    None,
                )

            alert = eventually(smtp_alert_firing, timeout=45, what=f"{SMTP_ALERT} to fire")
        finally:
            smtp_sink.start()

    assert alert["labels"] == {
        "alertname": SMTP_ALERT,
        "service": service("notifier").directory,
        "severity": "critical",
    }
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#closeloopsmtpunreachable"
    assert alert["value"] == "1e+00"

    # The sink is back: the held email goes out and the gauge (so the alert) clears, which the
    # other end-to-end tests of this session rely on.
    eventually(
        lambda: next((m for m in read_mailbox(maildir) if m["To"] == customer), None),
        timeout=90,
        what="the held apology to be sent once the sink is back",
    )

    def resolved() -> bool | None:
        reachable = total(prometheus, "sum(closeloop_notifier_smtp_unreachable)") == 0
        alerting = any(a["labels"]["alertname"] == SMTP_ALERT for a in prometheus.alerts())
        return True if reachable and not alerting else None

    eventually(resolved, what=f"{SMTP_ALERT} to resolve")
