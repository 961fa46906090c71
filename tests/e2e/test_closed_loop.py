"""The walking skeleton, end to end: canonical POST -> NPS aggregate -> case with owner -> apology
email in the SMTP sink; and a repeated POST changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from closeloop_devtools.mailsink import body_text, read_mailbox
from closeloop_devtools.stack import Stack
from closeloop_orchestrator.config import DEMO_TEAM
from tests.e2e.conftest import eventually


def a_response(response_id: str, *, score: int, comment: str | None) -> dict[str, Any]:
    return {
        "response_id": response_id,
        "survey_id": "relationship-2026",
        "customer": {
            "id": "cust-anna",
            "email": "anna.nowak@klient.example.pl",
            "name": "Anna Nowak",
            "locale": "pl-PL",
        },
        "account_id": "hurtownia-nowak",
        "score": score,
        "comment": comment,
        "answered_at": datetime.now(UTC).isoformat(),
        "segments": {
            "product": "billing",
            "region": "PL",
            "channel": "email",
            "touchpoint": "renewal",
        },
    }


def mails_of_case(maildir: Path, case_id: str) -> list[EmailMessage]:
    """The case's emails to its customer (its owner hears of the case too)."""
    return [
        m
        for m in read_mailbox(maildir)
        if m["X-Closeloop-Case-Id"] == case_id and m["To"] == "anna.nowak@klient.example.pl"
    ]


def test_detractor_answer_reaches_nps_case_and_apology_email_once(
    stack: Stack, maildir: Path, bearer: Callable[..., dict[str, str]]
) -> None:
    tenant = f"e2e-{uuid.uuid4().hex[:10]}"
    headers = bearer(tenant, "responses:write", "read")
    comment = "Faktura znowu była błędna, a na korektę czekałam trzy tygodnie."
    detractor = a_response(f"r-{uuid.uuid4().hex[:8]}", score=2, comment=comment)

    with httpx.Client(headers=headers, timeout=10) as client:
        posted = client.post(f"{stack.url('ingest')}/v1/responses", json=detractor)
        assert posted.status_code == 202, posted.text
        assert posted.json()["status"] == "accepted"
        assert posted.json()["category"] == "detractor"

        def overall_nps() -> dict[str, Any] | None:
            body = client.get(f"{stack.url('scoring')}/v1/nps").json()
            return body if body["responses"] >= 1 else None

        nps = eventually(overall_nps, what="the aggregate to count the response")
        assert (nps["responses"], nps["detractors"], nps["nps"]) == (1, 1, -100.0)
        region = client.get(f"{stack.url('scoring')}/v1/nps/region").json()["segments"]
        assert [(s["segment"], s["detractors"]) for s in region] == [("PL", 1)]

        def case_of(response_id: str) -> dict[str, Any] | None:
            found = client.get(
                f"{stack.url('orchestrator')}/v1/cases", params={"response_id": response_id}
            ).json()["cases"]
            return found[0] if found else None

        case = eventually(lambda: case_of(detractor["response_id"]), what="the case")
        assert case["playbook"] == "apology_callback"
        assert case["status"] == "open"
        owner = case["owner"]
        assert owner in [o.model_dump() for o in DEMO_TEAM]

        mail = eventually(
            lambda: next(iter(mails_of_case(maildir, case["case_id"])), None),
            what="the apology email",
        )
        assert mail["To"] == "anna.nowak@klient.example.pl"
        assert mail["Reply-To"] == owner["email"]
        assert mail["Subject"] == "Przepraszamy i chcemy to naprawić"
        body = body_text(mail)
        assert body.startswith("Dzień dobry,\n")
        assert f"> {comment}" in body
        assert owner["name"] in body

        sent = client.get(
            f"{stack.url('notifier')}/v1/messages", params={"case_id": case["case_id"]}
        ).json()["messages"]
        assert sorted((m["status"], m["kind"], m["locale"]) for m in sent) == [
            ("sent", "apology", "pl"),
            ("sent", "owner_new_case", "en"),  # the tenant sets no language: English
        ]

        # The survey tool delivers the same response again: accepted as a duplicate, no new event.
        again = client.post(f"{stack.url('ingest')}/v1/responses", json=detractor)
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "duplicate"
        assert again.json()["event_id"] == posted.json()["event_id"]

        # A later answer by the same customer travels the same partitions after the duplicate;
        # once its thank-you arrives, anything the duplicate caused would have arrived too.
        promoter = a_response(f"r-{uuid.uuid4().hex[:8]}", score=10, comment="Teraz jest świetnie!")
        assert client.post(f"{stack.url('ingest')}/v1/responses", json=promoter).status_code == 202
        later_case = eventually(lambda: case_of(promoter["response_id"]), what="the second case")
        eventually(
            lambda: mails_of_case(maildir, later_case["case_id"]) or None,
            what="the thank-you email",
        )

        # Scoring consumes on its own: wait until it has counted the later answer too (it saw
        # anything the duplicate caused before that, on the same partition).
        def promoter_counted() -> dict[str, Any] | None:
            body = client.get(f"{stack.url('scoring')}/v1/nps").json()
            return body if body["promoters"] >= 1 else None

        nps = eventually(promoter_counted, what="scoring to count the later answer")
        assert (nps["responses"], nps["detractors"], nps["promoters"], nps["nps"]) == (2, 1, 1, 0.0)
        all_cases = client.get(f"{stack.url('orchestrator')}/v1/cases").json()["cases"]
        assert sorted(c["response_id"] for c in all_cases) == sorted(
            [detractor["response_id"], promoter["response_id"]]
        )
        assert len(mails_of_case(maildir, case["case_id"])) == 1
