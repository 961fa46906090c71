"""The four services as real processes (console scripts, uvicorn) plus an SMTP sink, for e2e tests.

The services run with a per-tenant configuration file (`TENANTS_FILE`) that lists two tenants of
this run, `ACME` and `GLOBEX`, with their own teams and senders; any other tenant gets the
environment defaults.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from closeloop_common.kafka.topics import delete_topics, ensure_topics
from closeloop_common.services import service
from closeloop_common.settings import CommonSettings
from closeloop_devtools.mailsink import MailSink
from closeloop_devtools.stack import DEMO_MESSAGING, Stack

# Overridable so that several checkouts can run their e2e tests side by side on one machine.
SMTP_PORT = int(os.environ.get("E2E_SMTP_PORT", "11025"))
# Services on 18001-18004 by default, clear of a `make run` on the same machine.
PORT_OFFSET = int(os.environ.get("E2E_PORT_OFFSET", "10000"))
# Secrets of this run, so that test_log_privacy.py can prove they never reach a log line (the
# sink asks no login, so the SMTP password is configured but never sent).
SMTP_PASSWORD = f"smtp-password-{uuid.uuid4().hex}"
UNSUBSCRIBE_SECRET = f"unsubscribe-secret-{uuid.uuid4().hex}"
ERASURE_KEY = f"erasure-key-{uuid.uuid4().hex}"

T = TypeVar("T")

ACME = f"acme-{uuid.uuid4().hex[:8]}"
GLOBEX = f"globex-{uuid.uuid4().hex[:8]}"
TENANTS_TOML = f"""
[tenants.{ACME}]
company_name = "Acme Sp. z o.o."
from_address = "opinie@acme.example"
from_name = "Zespół Acme"
default_locale = "pl"
first_contact_sla_hours = 24

[[tenants.{ACME}.team]]
id = "ewa"
name = "Ewa Zielińska"
email = "ewa.zielinska@acme.example"

[tenants.{GLOBEX}]
company_name = "Globex Corporation"
from_address = "care@globex.example"
from_name = "Globex Care"
default_locale = "en"
first_contact_sla_hours = 12

[[tenants.{GLOBEX}.team]]
id = "hank"
name = "Hank Scorpio"
email = "hank.scorpio@globex.example"
"""


@pytest.fixture(scope="session")
def maildir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mail")


@pytest.fixture(scope="session")
def smtp_sink(maildir: Path) -> Iterator[MailSink]:
    """The stack's mail server (the notifier sends to its port); a test may stop it for an
    outage, and starts it again before it ends."""
    sink = MailSink(maildir, port=SMTP_PORT)
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="session")
def stack(
    infra: dict[str, str], smtp_sink: MailSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tenants_file = tmp_path_factory.mktemp("tenants") / "tenants.toml"
    tenants_file.write_text(TENANTS_TOML, encoding="utf-8")
    # Topics of their own: the integration tests leave thousands of events on this run's
    # topics, which services consuming from the earliest offset would have to work through
    # before they reach an e2e test's event.
    topics = CommonSettings(kafka_topic_prefix=f"{infra['KAFKA_TOPIC_PREFIX']}-e2e")
    asyncio.run(ensure_topics(topics))
    running = Stack(
        env={
            **infra,
            "KAFKA_TOPIC_PREFIX": topics.kafka_topic_prefix,
            "NOTIFIER_SMTP_PORT": str(SMTP_PORT),
            "NOTIFIER_SMTP_PASSWORD": SMTP_PASSWORD,
            "NOTIFIER_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
            "NOTIFIER_ERASURE_KEY": ERASURE_KEY,
            "TENANTS_FILE": str(tenants_file),
            # A notifier killed mid-send leaves its claim until the lease ends (see
            # docs/architecture.md): short here, so the crash test sees that message go out.
            "NOTIFIER_SEND_LEASE_SECONDS": "10",
            # Ingest's combined privacy export asks the other services on this run's ports.
            **{
                f"INGEST_{name.upper()}_URL": f"http://127.0.0.1:{service(name).port + PORT_OFFSET}"
                for name in ("scoring", "orchestrator", "notifier")
            },
            # Replies at once, day and night: these tests wait for the emails.
            "NOTIFIER_DEFAULT_MESSAGING": DEMO_MESSAGING,
        },
        log_dir=tmp_path_factory.mktemp("logs"),
        port_offset=PORT_OFFSET,
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()
        asyncio.run(delete_topics(topics))


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something other than None (or fail after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
