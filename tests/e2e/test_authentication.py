"""Authentication and tenant isolation on the four services as processes.

- Every API route of every service (read from its OpenAPI document, so a new route is covered
  without editing this test) refuses a request without a token (401) and a token without the
  route's scope (403); only `/healthz`, `/readyz` and `/metrics` are open.
- The tenant is the token's: on every read API a token for tenant A gets 404 for B's ids and never
  sees B's rows, and A's opt-out changes do not touch B's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from closeloop_common.services import SERVICES
from closeloop_devtools.stack import Stack
from tests.e2e.conftest import eventually

Bearer = Callable[..., dict[str, str]]
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}
UNAUTHORIZED = "urn:closeloop:problem:unauthorized"
FORBIDDEN = "urn:closeloop:problem:forbidden"


def api_routes(stack: Stack) -> list[tuple[str, str, str]]:
    """(service, method, path template) of every operation in the services' OpenAPI documents."""
    routes: list[tuple[str, str, str]] = []
    for spec in SERVICES:
        document = httpx.get(f"{stack.url(spec.name)}/openapi.json", timeout=10).json()
        for template, operations in document["paths"].items():
            routes.extend((spec.name, method.upper(), template) for method in operations)
    return routes


SIGNED_PATHS = {"/v1/webhooks/{source}"}
# The one-click unsubscribe link: its token is the credential (a customer's mail client follows
# it; tested in the notifier's test_unsubscribe_api.py: a token that is not ours is a 404).
TOKEN_PATHS = {"/v1/unsubscribe/{token}"}


def test_every_api_route_refuses_a_missing_token_and_a_token_without_its_scope(
    stack: Stack, bearer: Bearer
) -> None:
    # Survey tools' webhooks carry the tool's signature instead of a token (tested in ingest's
    # test_webhooks_api.py: nothing unsigned is accepted).
    routes = [r for r in api_routes(stack) if r[2] not in OPEN_PATHS | SIGNED_PATHS | TOKEN_PATHS]
    # The sweep is only as good as the routes it found: the known ones must be among them.
    assert {
        ("ingest", "POST", "/v1/responses"),
        ("ingest", "GET", "/v1/responses/{response_id}"),
        ("scoring", "GET", "/v1/nps"),
        ("scoring", "GET", "/v1/nps/{dimension}"),
        ("orchestrator", "GET", "/v1/cases"),
        ("orchestrator", "GET", "/v1/cases/{case_id}"),
        ("notifier", "GET", "/v1/messages"),
        ("notifier", "POST", "/v1/opt-outs"),
        ("notifier", "DELETE", "/v1/opt-outs/{email}"),
    } <= set(routes)
    no_scope = bearer(f"auth-{uuid.uuid4().hex[:8]}")

    with httpx.Client(timeout=10) as client:
        for service, method, template in routes:
            path = template
            for parameter in ("response_id", "case_id", "dimension", "email"):
                value = str(uuid.uuid4()) if parameter == "case_id" else "region"
                path = path.replace("{" + parameter + "}", value)
            url = f"{stack.url(service)}{path}"
            anonymous = client.request(method, url, json={}, headers={"X-Tenant-Id": "default"})
            assert anonymous.status_code == 401, (service, method, template, anonymous.text)
            assert anonymous.json()["type"] == UNAUTHORIZED
            assert anonymous.headers["www-authenticate"].startswith("Bearer")

            unscoped = client.request(method, url, json={}, headers=no_scope)
            assert unscoped.status_code == 403, (service, method, template, unscoped.text)
            assert unscoped.json()["type"] == FORBIDDEN

        for spec in SERVICES:
            for path in sorted(OPEN_PATHS):
                assert client.get(f"{stack.url(spec.name)}{path}").status_code == 200


def detractor(tenant: str, region: str) -> dict[str, Any]:
    return {
        "response_id": f"iso-{uuid.uuid4().hex[:10]}",
        "survey_id": "isolation",
        "customer": {
            "id": f"cust-{tenant}",
            "email": f"{tenant}@customers.example.com",
            "name": f"Customer of {tenant}",
            "locale": "en",
        },
        "account_id": f"account-{tenant}",
        "score": 1,
        "comment": f"secret complaint of {tenant}",
        "answered_at": datetime.now(UTC).isoformat(),
        "segments": {"product": "billing", "region": region, "channel": "email"},
    }


def test_a_token_for_one_tenant_never_reaches_another_tenant_s_data(
    stack: Stack, bearer: Bearer
) -> None:
    run = uuid.uuid4().hex[:8]
    tenants = {f"iso-a-{run}": "PL", f"iso-b-{run}": "DE"}
    clients = {
        tenant: httpx.Client(headers=bearer(tenant, "responses:write", "read", "cases:write"))
        for tenant in tenants
    }
    ingest, scoring = stack.url("ingest"), stack.url("scoring")
    orchestrator, notifier = stack.url("orchestrator"), stack.url("notifier")
    seen: dict[str, dict[str, Any]] = {}
    try:
        for tenant, region in tenants.items():
            body = detractor(tenant, region)
            posted = clients[tenant].post(f"{ingest}/v1/responses", json=body)
            assert posted.status_code == 202, posted.text
            seen[tenant] = {"response_id": body["response_id"], "email": body["customer"]["email"]}
        for tenant, client in clients.items():

            def sent_message(client: httpx.Client = client) -> dict[str, Any] | None:
                found = client.get(f"{notifier}/v1/messages", params={"kind": "apology"}).json()[
                    "messages"
                ]
                return found[0] if found and found[0]["status"] == "sent" else None

            message = eventually(sent_message, what=f"the message of {tenant}")
            seen[tenant]["case_id"] = message["case_id"]

            # Scoring consumes on its own, not before the notifier: wait for its count too.
            def counted(client: httpx.Client = client) -> dict[str, Any] | None:
                body: dict[str, Any] = client.get(f"{scoring}/v1/nps").json()
                return body if body["responses"] >= 1 else None

            eventually(counted, what=f"scoring to count the answer of {tenant}")
            # An opt-out of a shared address, to see that another tenant cannot lift it.
            opted = client.post(
                f"{notifier}/v1/opt-outs", json={"email": f"shared-{run}@x.example"}
            )
            assert opted.status_code == 201, opted.text

        for viewer, other in ((a, b) for a in tenants for b in tenants if a != b):
            client, mine, theirs = clients[viewer], seen[viewer], seen[other]

            assert client.get(f"{ingest}/v1/responses/{mine['response_id']}").status_code == 200
            assert client.get(f"{ingest}/v1/responses/{theirs['response_id']}").status_code == 404

            nps = client.get(f"{scoring}/v1/nps").json()
            assert (nps["tenant_id"], nps["responses"], nps["detractors"]) == (viewer, 1, 1)
            regions = client.get(f"{scoring}/v1/nps/region").json()["segments"]
            assert [(s["segment"], s["responses"]) for s in regions] == [(tenants[viewer], 1)]

            cases = client.get(f"{orchestrator}/v1/cases").json()["cases"]
            assert [c["case_id"] for c in cases] == [mine["case_id"]]
            assert client.get(f"{orchestrator}/v1/cases/{mine['case_id']}").status_code == 200
            assert client.get(f"{orchestrator}/v1/cases/{theirs['case_id']}").status_code == 404
            by_response = client.get(
                f"{orchestrator}/v1/cases", params={"response_id": theirs["response_id"]}
            )
            assert by_response.json()["cases"] == []

            messages = client.get(f"{notifier}/v1/messages").json()["messages"]
            # The customer's reply and the owner's new-case message, both of this tenant's case.
            assert {m["case_id"] for m in messages} == {mine["case_id"]}
            customer = [m["recipient"] for m in messages if m["audience"] == "customer"]
            assert customer == [mine["email"]]
            by_case = client.get(f"{notifier}/v1/messages", params={"case_id": theirs["case_id"]})
            assert by_case.json()["messages"] == []

        # A lifts its own opt-out of the shared address: B's stays (B's POST finds it there).
        a, b = tenants
        shared = f"shared-{run}@x.example"
        assert clients[a].delete(f"{notifier}/v1/opt-outs/{shared}").status_code == 204
        again_b = clients[b].post(f"{notifier}/v1/opt-outs", json={"email": shared})
        assert again_b.status_code == 200, again_b.text
        again_a = clients[a].post(f"{notifier}/v1/opt-outs", json={"email": shared})
        assert again_a.status_code == 201, again_a.text
    finally:
        for client in clients.values():
            client.close()
