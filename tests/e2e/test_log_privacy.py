"""Secrets and personal data never reach the logs: a full flow through the four services as
processes (a signed webhook and a canonical POST, cases, emails over SMTP, team messages refused by a
chat webhook whose URL is a secret, opt-outs set and lifted by address, refused tokens), then every captured service log is searched for the configured
secrets, the tokens used and the test customers' emails, names and comments
(`closeloop_devtools.logscan`, which the fault run and the soak can call on their logs too)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from closeloop_devtools.logscan import scan, secrets_of
from closeloop_devtools.stack import Stack
from tests.e2e.conftest import ERASURE_KEY, SMTP_PASSWORD, UNSUBSCRIBE_SECRET, eventually

Bearer = Callable[..., dict[str, str]]


def a_detractor(run: str, who: str) -> dict[str, Any]:
    return {
        "response_id": f"privacy-{who}-{run}",
        "survey_id": "privacy",
        "customer": {
            "id": f"cust-{who}-{run}",
            "email": f"{who}.{run}@privacy.example.com",
            "name": f"Zofia Kanarek{who}{run}",
            "locale": "en",
        },
        "account_id": f"account-{run}",
        "score": 2,
        "comment": f"private complaint {who} {run}: the invoice was wrong",
        "answered_at": datetime.now(UTC).isoformat(),
        "segments": {"product": "billing", "region": "PL", "channel": "email"},
    }


def test_a_full_flow_leaves_no_secret_and_no_personal_data_in_the_logs(
    stack: Stack, bearer: Bearer
) -> None:
    run = uuid.uuid4().hex[:10]
    tenant = f"privacy-{run}"
    token = bearer(tenant, "admin")
    whsec = "whsec_" + base64.b64encode(f"privacy signing key {run}".encode()).decode()
    posted, hooked = a_detractor(run, "posted"), a_detractor(run, "hooked")
    opted_out = f"opted.{run}@privacy.example.com"
    forged = token["Authorization"][:-8] + "AAAAAAAA"  # same claims, a signature that fails
    ingest, notifier = stack.url("ingest"), stack.url("notifier")

    # The team's messages go to a chat webhook whose URL path is itself a secret (as Slack's
    # are); the address refuses them (loopback is no webhook target), so their failure is logged.
    hook_path = f"hooks/T0/B0/{uuid.uuid4().hex}"
    team_secret = "whsec_" + base64.b64encode(f"team channel key {run}".encode()).decode()
    with httpx.Client(headers=token, timeout=10) as client:
        settings = client.put(
            f"{notifier}/v1/settings",
            json={
                "team_channel": {
                    "kind": "webhook",
                    "webhook_url": f"http://127.0.0.1:9/{hook_path}",
                    "webhook_secret": team_secret,
                }
            },
            headers={"If-Match": '"0"'},
        )
        assert settings.status_code == 200, settings.text
        source = client.put(
            f"{ingest}/v1/sources/privacy", json={"kind": "standard", "secrets": [whsec]}
        )
        assert source.status_code == 201, source.text
        assert client.post(f"{ingest}/v1/responses", json=posted).status_code == 202
        body = httpx.Request("POST", "/", json=hooked).content
        sent_at, message_id = datetime.now(UTC), f"msg_{run}"
        hook = httpx.post(
            source.json()["webhook_url"],
            content=body,
            headers={
                "content-type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(int(sent_at.timestamp())),
                "webhook-signature": Webhook(whsec).sign(message_id, sent_at, body.decode()),
            },
        )
        assert hook.status_code == 202, hook.text
        # Refused tokens and a refused signature: the log must not quote what was refused.
        refused = client.get(f"{ingest}/v1/sources", headers={"Authorization": forged})
        assert refused.status_code == 401
        unsigned = httpx.post(
            source.json()["webhook_url"],
            content=body,
            headers={"content-type": "application/json"},
        )
        assert unsigned.status_code == 401
        assert client.post(f"{notifier}/v1/opt-outs", json={"email": opted_out}).status_code == 201
        assert client.delete(f"{notifier}/v1/opt-outs/{opted_out}").status_code == 204

        def both_apologies_sent() -> list[dict[str, Any]] | None:
            found = client.get(f"{notifier}/v1/messages", params={"kind": "apology"}).json()
            sent = [m for m in found["messages"] if m["status"] == "sent"]
            return sent if len(sent) == 2 else None

        sent = eventually(both_apologies_sent, what="an apology to each customer")

        def owner_messages_failed() -> list[dict[str, Any]] | None:
            found = client.get(
                f"{notifier}/v1/messages", params={"kind": "owner_new_case", "status": "failed"}
            ).json()["messages"]
            return found if len(found) == 2 else None

        eventually(owner_messages_failed, what="the team webhook's refusals")
        assert {m["recipient"] for m in sent} == {
            posted["customer"]["email"],
            hooked["customer"]["email"],
        }
        # Erasing one of them by address: the request and every service's part of it are
        # logged (erasure id, tenant, counts), and the scan below reads those lines too.
        asked = client.post(
            f"{ingest}/v1/privacy/erasures", json={"email": posted["customer"]["email"]}
        )
        assert asked.status_code == 202, asked.text

        def erased() -> dict[str, Any] | None:
            status: dict[str, Any] = client.get(ingest + asked.headers["location"]).json()
            return status if status["status"] == "completed" else None

        done = eventually(erased, what="every service's part of the erasure")
        assert done["services"]["ingest"]["rows"]["responses"] == 1

    personal = {
        f"{who} {field}": value
        for who, response in (("posted", posted), ("hooked", hooked))
        for field, value in (
            ("email", response["customer"]["email"]),
            ("name", response["customer"]["name"]),
            ("comment", response["comment"]),
        )
    }
    needles = {
        **personal,
        "opted-out email": opted_out,
        "webhook secret": whsec,
        "team webhook secret": team_secret,
        "team webhook URL path": hook_path,
        "bearer token": token["Authorization"].removeprefix("Bearer "),
        "forged token": forged.removeprefix("Bearer "),
        **secrets_of(stack.env),
    }
    configured = secrets_of(stack.env)
    assert configured.keys() == {
        "DATABASE_URL password",
        "NOTIFIER_SMTP_PASSWORD",
        "NOTIFIER_UNSUBSCRIBE_SECRET",
        "NOTIFIER_ERASURE_KEY",
    }
    assert (
        configured["NOTIFIER_SMTP_PASSWORD"],
        configured["NOTIFIER_UNSUBSCRIBE_SECRET"],
        configured["NOTIFIER_ERASURE_KEY"],
    ) == (SMTP_PASSWORD, UNSUBSCRIBE_SECRET, ERASURE_KEY)
    logs = sorted(stack.log_dir.glob("*.log"))
    assert [p.stem for p in logs] == ["ingest", "notifier", "orchestrator", "scoring"]
    assert all(p.stat().st_size > 0 for p in logs)
    assert [str(f) for f in scan(logs, needles)] == []
