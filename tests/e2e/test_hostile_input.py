"""Hostile input against the four services as processes.

- Every write route of every service (from the OpenAPI documents) answers a 10,000-deep JSON
  document, invalid UTF-8 and a body over the size limit with a 4xx problem (400/422/413),
  quickly, and stays healthy; so do a survey tool's signed webhooks.
- Scores that are floats, negative, over 10, booleans, strings, null or NaN are refused (422).
- SQL text in ids, segments, query parameters and path segments is data: stored, read back and
  filtered on as typed, never refused with a 500 (an email that is SQL is not an email: 422).
- Template syntax in a customer's name and comment reaches the notifier's emails and the
  orchestrator's review pack as typed (never evaluated), escaped in HTML; CR/LF in a name cannot
  add a header or a recipient, nor a line to the email's body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from closeloop_common.services import SERVICES
from closeloop_devtools.mailsink import read_mailbox
from closeloop_devtools.stack import Stack
from tests.e2e.conftest import eventually

Bearer = Callable[..., dict[str, str]]
PROBLEM = "application/problem+json"
SQL = "x' OR '1'='1'; DROP TABLE ingest.responses;--"
TEMPLATE = "{{ 7*7 }} {% raw %}r{% endraw %} ${7*7} #{7*7} {{ ''.__class__.__mro__ }} <b>bold</b>"
DEEP = b"[" * 10_000 + b"]" * 10_000
HOSTILE_BODIES = {
    "10,000-deep arrays": DEEP,
    "10,000-deep objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "invalid UTF-8 in a string": b'{"comment": "\xff\xfe\xc3\x28"}',
    "invalid UTF-8 only": b"\xff\xfe",
    "over the size limit": b'{"a": "' + b"x" * (3 * 1024 * 1024) + b'"}',
}
PATH_VALUES = {
    "response_id": "r-1",
    "source": "x",
    "name": "x",
    "account_id": "a-1",
    "person_id": "p-1",
    "kind": "apology",
    "locale": "en",
}


def a_response(run: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "response_id": f"hostile-{uuid.uuid4().hex[:10]}",
        "survey_id": "hostile",
        "customer": {
            "id": f"cust-{run}",
            "email": f"hostile.{run}@customers.example.com",
            "name": "Jan Nowak",
            "locale": "en",
        },
        "account_id": f"account-{run}",
        "score": 1,
        "comment": "plain",
        "answered_at": datetime.now(UTC).isoformat(),
        "segments": {"product": "billing", "region": "PL", "channel": "email"},
    }
    for key, value in changes.items():
        if key.startswith("customer_"):
            body["customer"][key.removeprefix("customer_")] = value
        else:
            body[key] = value
    return body


def assert_problem(reply: httpx.Response, *statuses: int) -> None:
    assert reply.status_code in statuses, (reply.request.url, reply.status_code, reply.text[:300])
    assert reply.headers["content-type"] == PROBLEM


def test_every_write_route_refuses_deep_huge_and_invalid_utf8_bodies_and_stays_healthy(
    stack: Stack, bearer: Bearer
) -> None:
    tenant = f"hostile-{uuid.uuid4().hex[:8]}"
    admin = bearer(tenant, "admin")
    routes: list[tuple[str, str, str]] = []
    with httpx.Client(timeout=30) as client:
        for spec in SERVICES:
            document = client.get(f"{stack.url(spec.name)}/openapi.json").json()
            for template, operations in document["paths"].items():
                for method, operation in operations.items():
                    if "requestBody" in operation and template != "/v1/webhooks/{source}":
                        routes.append((spec.name, method.upper(), template))
        assert len(routes) >= 30
        secret = f"hostile-secret-{uuid.uuid4().hex}"
        source = client.put(
            f"{stack.url('ingest')}/v1/sources/hostile",
            json={"kind": "typeform", "secrets": [secret]},
            headers=admin,
        )
        assert source.status_code == 201, source.text
        webhook = source.json()["webhook_url"]

        slowest = 0.0
        for label, body in HOSTILE_BODIES.items():
            for service, method, template in routes:
                path = template
                for name, value in PATH_VALUES.items():
                    path = path.replace("{" + name + "}", value)
                path = path.replace("{", "").replace("}", "")  # the other ids: not uuids, 4xx
                started = time.perf_counter()
                reply = client.request(
                    method,
                    stack.url(service) + path,
                    content=body,
                    headers={**admin, "content-type": "application/json", "if-match": '"0"'},
                )
                if "deep" in label:
                    slowest = max(slowest, time.perf_counter() - started)
                expected = (413,) if label == "over the size limit" else (400, 404, 422)
                assert_problem(reply, *expected)
            signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
            hooked = client.post(
                webhook,
                content=body,
                headers={
                    "content-type": "application/json",
                    "Typeform-Signature": f"sha256={signature.decode()}",
                },
            )
            assert_problem(hooked, 413 if label == "over the size limit" else 422)
        for spec in SERVICES:
            assert client.get(f"{stack.url(spec.name)}/healthz").status_code == 200
    # A deep document is refused at once (milliseconds): no recursion, no CPU to speak of. The
    # bound is loose for a loaded CI machine; a parser that recursed or backtracked would blow it.
    assert slowest < 5.0


def test_scores_that_are_not_whole_numbers_from_0_to_10_are_refused(
    stack: Stack, bearer: Bearer
) -> None:
    run = uuid.uuid4().hex[:8]
    url = f"{stack.url('ingest')}/v1/responses"
    with httpx.Client(headers=bearer(f"hostile-{run}", "responses:write"), timeout=10) as client:
        for score in (7.5, 7.0, -1, 11, True, "7", "seven", None, 10**30):
            assert_problem(client.post(url, json=a_response(run, score=score)), 422)
        nan = client.post(
            url,
            content=b'{"response_id": "r", "score": NaN}',
            headers={"content-type": "application/json"},
        )
        assert_problem(nan, 422)
        assert client.post(url, json=a_response(run, score=10)).status_code == 202


def test_sql_text_is_data_everywhere(stack: Stack, bearer: Bearer) -> None:
    run = uuid.uuid4().hex[:8]
    ingest, scoring = stack.url("ingest"), stack.url("scoring")
    orchestrator, notifier = stack.url("orchestrator"), stack.url("notifier")
    body = a_response(
        run,
        response_id=SQL,
        survey_id=SQL,
        account_id=SQL,
        segments={"product": SQL, "region": SQL, "channel": "email"},
    )
    with httpx.Client(headers=bearer(f"hostile-{run}", "admin"), timeout=10) as client:
        assert client.post(f"{ingest}/v1/responses", json=body).status_code == 202
        stored = client.get(f"{ingest}/v1/responses/{SQL}")
        assert (stored.status_code, stored.json()["response_id"]) == (200, SQL)
        bad_email = a_response(run, customer_email=f"{SQL}@x.example")
        assert_problem(client.post(f"{ingest}/v1/responses", json=bad_email), 422)

        def counted() -> dict[str, Any] | None:
            found: dict[str, Any] = client.get(
                f"{scoring}/v1/nps", params={"product": SQL, "survey": SQL}
            ).json()
            return found if found["responses"] == 1 else None

        assert eventually(counted, what="scoring to count it")["detractors"] == 1
        assert (
            client.get(f"{scoring}/v1/nps", params={"product": SQL + "'"}).json()["responses"] == 0
        )
        [case] = eventually(
            lambda: (
                client.get(f"{orchestrator}/v1/cases", params={"response_id": SQL}).json()["cases"]
                or None
            ),
            what="the case",
        )
        by_account = client.get(f"{orchestrator}/v1/cases", params={"account_id": SQL}).json()
        assert [c["case_id"] for c in by_account["cases"]] == [case["case_id"]]
        for service, path, params in (
            (scoring, f"/v1/accounts/{SQL}/nps", {}),
            (scoring, f"/v1/themes/{SQL}/responses", {}),
            (orchestrator, f"/v1/accounts/{SQL}/actions", {}),
            (orchestrator, f"/v1/accounts/{SQL}/review.html", {}),
            (orchestrator, "/v1/account-owners", {"after": SQL}),
            (notifier, "/v1/messages", {"response_id": SQL}),
        ):
            assert client.get(service + path, params=params).status_code == 200, path
        for service, path, params in (
            (orchestrator, f"/v1/cases/{SQL}", {}),
            (orchestrator, "/v1/cases", {"status": SQL}),
            (notifier, f"/v1/messages/{SQL}", {}),
            (notifier, f"/v1/opt-outs/{SQL}", {}),
            (scoring, "/v1/nps/breakdown", {"by": SQL}),
        ):
            method = "DELETE" if "opt-outs" in path else "GET"
            assert_problem(client.request(method, service + path, params=params), 422)


def _mails(maildir: Path, case_id: str) -> list[EmailMessage]:
    return [m for m in read_mailbox(maildir) if m["X-Closeloop-Case-Id"] == case_id]


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    content: str = part.get_content()
    return content


def test_template_syntax_and_line_breaks_from_customers_stay_inert_text(
    stack: Stack, bearer: Bearer, maildir: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    orchestrator, notifier = stack.url("orchestrator"), stack.url("notifier")
    account = f"account-{run}"
    name = f"Jan{run}\r\nBcc: victim-{run}@evil.example\r\nX-Injected: yes"
    body = a_response(run, comment=TEMPLATE, customer_name=name)
    with httpx.Client(headers=bearer(f"hostile-{run}", "admin"), timeout=10) as client:
        posted = client.post(f"{stack.url('ingest')}/v1/responses", json=body)
        assert posted.status_code == 202, posted.text

        def sent_messages() -> list[dict[str, Any]] | None:
            found = client.get(
                f"{notifier}/v1/messages", params={"response_id": body["response_id"]}
            ).json()["messages"]
            sent = [m for m in found if m["status"] == "sent"]
            return sent if len(sent) == 2 else None

        messages = eventually(sent_messages, what="the apology and the owner's message")
        case_id = messages[0]["case_id"]
        mails = eventually(
            lambda: _mails(maildir, case_id) if len(_mails(maildir, case_id)) == 2 else None,
            what="both emails in the sink",
        )
        for mail in mails:
            assert mail["Bcc"] is None
            assert mail["X-Injected"] is None
            assert len(mail.get_all("To", [])) == 1
            assert "victim" not in mail["To"]
            assert "\n" not in str(mail["Subject"])
            text, html = _part(mail, "plain"), _part(mail, "html")
            assert f"Jan{run}\n" not in text  # the name is one line in the body too
            assert "<b>bold</b>" not in html
        apology = next(m for m in mails if m["X-Closeloop-Kind"] == "apology")
        assert TEMPLATE in _part(apology, "plain")
        assert "{{ 7*7 }} {% raw %}r{% endraw %} ${7*7}" in _part(apology, "html")
        assert "&lt;b&gt;bold&lt;/b&gt;" in _part(apology, "html")

        # The review pack shows what a tenant wrote (an action's title, its owner's name).
        action = client.post(
            f"{orchestrator}/v1/accounts/{account}/actions",
            json={"title": TEMPLATE, "owner": {"id": "o-1", "name": TEMPLATE}},
        )
        assert action.status_code == 201, action.text
        page = client.get(f"{orchestrator}/v1/accounts/{account}/review.html")
        assert page.status_code == 200
        assert "{{ 7*7 }} {% raw %}r{% endraw %} ${7*7}" in page.text
        assert "&lt;b&gt;bold&lt;/b&gt;" in page.text
        assert "<b>bold</b>" not in page.text
