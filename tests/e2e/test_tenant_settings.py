"""Per-tenant settings from `TENANTS_FILE`, end to end: two tenants' cases go to their own teams
with their own SLAs, and their customers hear from their own company, sender and language."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from closeloop_devtools.mailsink import body_text, read_mailbox
from closeloop_devtools.stack import Stack
from tests.e2e.conftest import ACME, GLOBEX, eventually


def detractor_without_locale(tenant: str) -> dict[str, Any]:
    return {
        "response_id": f"ts-{uuid.uuid4().hex[:10]}",
        "survey_id": "tenant-settings",
        "customer": {"id": f"cust-{uuid.uuid4().hex[:8]}", "email": f"{tenant}@clients.example"},
        "score": 0,
        "comment": "Nothing worked.",
        "answered_at": datetime.now(UTC).isoformat(),
    }


def test_two_tenants_get_their_own_owners_slas_senders_and_language(
    stack: Stack, maildir: Path, bearer: Callable[..., dict[str, str]]
) -> None:
    expected: dict[str, dict[str, Any]] = {
        ACME: {
            "owner": "ewa",
            "sla": timedelta(hours=24),
            "from": Address("Zespół Acme", addr_spec="opinie@acme.example"),
            "company": "Acme Sp. z o.o.",
            "subject": "Przepraszamy i chcemy to naprawić",
        },
        GLOBEX: {
            "owner": "hank",
            "sla": timedelta(hours=12),
            "from": Address("Globex Care", addr_spec="care@globex.example"),
            "company": "Globex Corporation",
            "subject": "We are sorry, and we want to put it right",
        },
    }
    for tenant, wanted in expected.items():
        with httpx.Client(headers=bearer(tenant, "responses:write", "read"), timeout=10) as client:
            opened = open_case(stack, client, detractor_without_locale(tenant))
        assert opened["owner"]["id"] == wanted["owner"]
        due = datetime.fromisoformat(opened["first_contact_due_at"])
        assert due - datetime.fromisoformat(opened["opened_at"]) == wanted["sla"]

        mail = eventually(
            functools.partial(mail_of_case, maildir, opened["case_id"]),
            what=f"the apology of {tenant}",
        )
        assert mail["From"].addresses == (wanted["from"],)
        assert mail["Subject"] == wanted["subject"]
        assert wanted["company"] in body_text(mail)


def open_case(stack: Stack, client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """Post the response and wait for its case."""
    posted = client.post(f"{stack.url('ingest')}/v1/responses", json=body)
    assert posted.status_code == 202, posted.text

    def case() -> dict[str, Any] | None:
        found = client.get(
            f"{stack.url('orchestrator')}/v1/cases", params={"response_id": body["response_id"]}
        ).json()["cases"]
        return found[0] if found else None

    return eventually(case, what=f"the case of {body['response_id']}")


def mail_of_case(maildir: Path, case_id: str) -> EmailMessage | None:
    return next((m for m in read_mailbox(maildir) if m["X-Closeloop-Case-Id"] == case_id), None)
