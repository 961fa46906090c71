"""Tenant isolation on every API route, read from the services' OpenAPI documents.

Tenant A gets one of everything (a source with its secret, a detractor's response, its case, a
held apology draft and the owner's message, a structural issue and its "you said, we did"
campaign, an account action, an account weight and owner, an opt-out, messaging settings and a
template override), every text of it carrying a canary string. Then tenant B, with an admin token,
calls every route of every service with A's ids filled in:

- nothing B gets back holds A's canary or an id of A's that B did not send itself;
- a route that names one of A's resources answers 404 (`HIDDEN`); a route on a key B may use for
  its own data too (an account id, a template's kind) acts on B's own (`OWN`);
- A's data reads the same afterwards, to A.

A route the table below does not know fails the test: a new route is covered by teaching it here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from closeloop_common.services import SERVICES
from closeloop_devtools.stack import Stack
from tests.e2e.conftest import eventually

Bearer = Callable[..., dict[str, str]]
Expect = Literal["hidden", "own", "refused", "signed", "token"]
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}


@dataclass(frozen=True)
class Call:
    """How B calls a route: what it expects, and the query and body it sends."""

    expect: Expect
    body: Any = None
    query: Mapping[str, str] = field(default_factory=dict)
    if_match: str = '"1"'  # '"0"': B's first version of its own settings


TEXT = {"locale": "en", "texts": {"en": {"title": "Done", "summary": "We fixed it."}}}
ROUTES: dict[tuple[str, str, str], Call] = {
    # ingest
    ("ingest", "POST", "/v1/responses"): Call("own", "RESPONSE"),
    ("ingest", "GET", "/v1/responses/{response_id}"): Call("hidden"),
    ("ingest", "POST", "/v1/responses/{response_id}/confirm"): Call("hidden"),
    ("ingest", "POST", "/v1/webhooks/{source}"): Call("signed", {"x": 1}),
    ("ingest", "PUT", "/v1/sources/{name}"): Call("own", {"kind": "typeform", "secrets": ["b"]}),
    ("ingest", "GET", "/v1/sources/{name}"): Call("hidden"),
    ("ingest", "DELETE", "/v1/sources/{name}"): Call("hidden"),
    ("ingest", "GET", "/v1/sources"): Call("own"),
    ("ingest", "POST", "/v1/invitations"): Call("own", "INVITATIONS"),
    # B erasing or exporting the address of A's customer reaches only B's own (nothing): A's
    # data is read again once every service has done B's erasure.
    ("ingest", "POST", "/v1/privacy/erasures"): Call("own", {"email": "{customer_email}"}),
    ("ingest", "GET", "/v1/privacy/erasures/{erasure_id}"): Call("hidden"),
    ("ingest", "POST", "/v1/privacy/export"): Call("own", {"email": "{customer_email}"}),
    ("ingest", "POST", "/v1/privacy/exports"): Call("own", {"customer_id": "{customer_id}"}),
    ("scoring", "POST", "/v1/privacy/export"): Call("own", {"customer_id": "{customer_id}"}),
    ("orchestrator", "POST", "/v1/privacy/export"): Call("own", {"email": "{customer_email}"}),
    ("notifier", "POST", "/v1/privacy/export"): Call("own", {"email": "{customer_email}"}),
    # scoring: aggregates are keyed by values any tenant may use; B reads its own (empty) ones
    ("scoring", "GET", "/v1/nps"): Call("own", query={"account": "{account_id}"}),
    ("scoring", "GET", "/v1/nps/trend"): Call("own", query={"account": "{account_id}"}),
    ("scoring", "GET", "/v1/nps/compare"): Call(
        "own", query={"account": "{account_id}", "baseline_survey": "isolation"}
    ),
    ("scoring", "GET", "/v1/nps/breakdown"): Call("own", query={"by": "account"}),
    ("scoring", "GET", "/v1/nps/{dimension}"): Call("own"),
    ("scoring", "GET", "/v1/drivers"): Call("own"),
    ("scoring", "GET", "/v1/themes/{theme}/responses"): Call("own"),
    ("scoring", "POST", "/v1/what-if"): Call(
        "own",
        {"scenario": {"kind": "win-back", "segment": {"account": "{account_id}"}, "share": 0.5}},
    ),
    ("scoring", "GET", "/v1/accounts"): Call("own"),
    ("scoring", "GET", "/v1/accounts/{account_id}/nps"): Call("own"),
    ("scoring", "GET", "/v1/accounts/{account_id}/health"): Call("own"),
    ("scoring", "PUT", "/v1/accounts/{account_id}/weight"): Call("own", {"revenue_weight": 1}),
    # orchestrator
    ("orchestrator", "GET", "/v1/cases"): Call("own", query={"response_id": "{response_id}"}),
    ("orchestrator", "GET", "/v1/cases/{case_id}"): Call("hidden"),
    ("orchestrator", "GET", "/v1/cases/{case_id}/history"): Call("hidden"),
    ("orchestrator", "POST", "/v1/cases/{case_id}/claim"): Call("hidden", {"owner_id": "ewa"}),
    ("orchestrator", "POST", "/v1/cases/{case_id}/reassign"): Call(
        "hidden", {"owner_id": "ewa", "note": "mine now"}
    ),
    ("orchestrator", "POST", "/v1/cases/{case_id}/contacts"): Call(
        "hidden", {"channel": "phone", "outcome": "reached", "note": "called"}
    ),
    ("orchestrator", "POST", "/v1/cases/{case_id}/root-causes"): Call(
        "hidden", {"tags": ["billing"]}
    ),
    ("orchestrator", "POST", "/v1/cases/{case_id}/resolve"): Call(
        "hidden", {"outcome": "solved", "note": "done"}
    ),
    ("orchestrator", "POST", "/v1/cases/{case_id}/close"): Call("hidden", {"note": "closed"}),
    ("orchestrator", "POST", "/v1/cases/{case_id}/reopen"): Call("hidden", {"note": "again"}),
    ("orchestrator", "GET", "/v1/setup/organisation"): Call("own"),
    ("orchestrator", "PUT", "/v1/setup/organisation"): Call("own", "ORGANISATION", if_match='"0"'),
    ("orchestrator", "GET", "/v1/setup/rules"): Call("own"),
    ("orchestrator", "PUT", "/v1/setup/rules"): Call("own", {"rules": []}, if_match='"0"'),
    ("orchestrator", "POST", "/v1/setup/rules/run"): Call(
        "own", {"since": "2020-01-01T00:00:00Z", "dry_run": True}
    ),
    # A's person is nobody in B's organisation.
    ("orchestrator", "PUT", "/v1/people/{person_id}/away"): Call("hidden", {"away": True}),
    ("orchestrator", "PUT", "/v1/account-owners"): Call(
        "own", {"owners": [{"account_id": "{account_id}", "owner_id": None}]}
    ),
    ("orchestrator", "GET", "/v1/account-owners"): Call("own"),
    # B's issue may not name A's case.
    ("orchestrator", "POST", "/v1/issues"): Call(
        "refused", {"title": "B's", "source": "cases", "case_ids": ["{case_id}"], "cost": 1}
    ),
    ("orchestrator", "GET", "/v1/issues"): Call("own"),
    ("orchestrator", "GET", "/v1/issues/{issue_id}"): Call("hidden"),
    ("orchestrator", "PATCH", "/v1/issues/{issue_id}"): Call("hidden", {"title": "B was here"}),
    ("orchestrator", "POST", "/v1/issues/{issue_id}/estimate"): Call("hidden", {}),
    ("orchestrator", "POST", "/v1/issues/{issue_id}/cases"): Call(
        "hidden", {"remove": ["{case_id}"]}
    ),
    ("orchestrator", "POST", "/v1/issues/{issue_id}/prioritise"): Call("hidden"),
    ("orchestrator", "POST", "/v1/issues/{issue_id}/start"): Call("hidden"),
    ("orchestrator", "POST", "/v1/issues/{issue_id}/done"): Call("hidden", TEXT),
    ("orchestrator", "POST", "/v1/issues/{issue_id}/reject"): Call(
        "hidden", {**TEXT, "reason": "no"}
    ),
    ("orchestrator", "POST", "/v1/accounts/{account_id}/actions"): Call(
        "own", {"title": "B's action"}
    ),
    ("orchestrator", "GET", "/v1/accounts/{account_id}/actions"): Call("own"),
    ("orchestrator", "GET", "/v1/accounts/{account_id}/actions/{action_id}"): Call("hidden"),
    ("orchestrator", "PATCH", "/v1/accounts/{account_id}/actions/{action_id}"): Call(
        "hidden", {"title": "B was here"}
    ),
    ("orchestrator", "GET", "/v1/accounts/{account_id}/review"): Call("own"),
    ("orchestrator", "GET", "/v1/accounts/{account_id}/review.html"): Call("own"),
    ("orchestrator", "GET", "/v1/loop/impact"): Call("own"),
    # notifier
    ("notifier", "GET", "/v1/messages"): Call("own", query={"case_id": "{case_id}"}),
    ("notifier", "GET", "/v1/messages/{message_id}"): Call("hidden"),
    ("notifier", "GET", "/v1/drafts"): Call("own"),
    ("notifier", "PATCH", "/v1/drafts/{message_id}"): Call("hidden", {"subject": "B was here"}),
    ("notifier", "POST", "/v1/drafts/{message_id}/approve"): Call("hidden", {}),
    ("notifier", "POST", "/v1/drafts/{message_id}/discard"): Call("hidden"),
    ("notifier", "POST", "/v1/opt-outs"): Call("own", {"email": "{email}"}),
    # Lifting an opt-out B never set is a no-op (204 whether or not anyone opted out: no oracle).
    ("notifier", "DELETE", "/v1/opt-outs/{email}"): Call("own"),
    ("notifier", "GET", "/v1/settings"): Call("own"),
    ("notifier", "PUT", "/v1/settings"): Call("own", {"messages_on": []}, if_match='"0"'),
    ("notifier", "GET", "/v1/campaigns"): Call("own"),
    ("notifier", "GET", "/v1/campaigns/{campaign_id}"): Call("hidden"),
    ("notifier", "POST", "/v1/campaigns/{campaign_id}/pause"): Call("hidden"),
    ("notifier", "POST", "/v1/campaigns/{campaign_id}/resume"): Call("hidden"),
    ("notifier", "POST", "/v1/campaigns/{campaign_id}/cancel"): Call("hidden"),
    ("notifier", "GET", "/v1/templates"): Call("own"),
    ("notifier", "GET", "/v1/templates/{kind}/{locale}"): Call("own"),
    # B going back to the default template it already uses: a no-op on B's own.
    ("notifier", "DELETE", "/v1/templates/{kind}/{locale}"): Call("own", if_match='"0"'),
    ("notifier", "PUT", "/v1/templates/{kind}/{locale}"): Call("own", "TEMPLATE", if_match='"0"'),
    ("notifier", "POST", "/v1/templates/{kind}/{locale}/preview"): Call("own", {}),
    # The one-click unsubscribe link: its token is the credential (a customer's mail client
    # follows it); B holds no token of A's customers, so a token B makes up is what it can send.
    ("notifier", "GET", "/v1/unsubscribe/{token}"): Call("token"),
    ("notifier", "POST", "/v1/unsubscribe/{token}"): Call("token"),
}


def api_routes(stack: Stack) -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for spec in SERVICES:
        document = httpx.get(f"{stack.url(spec.name)}/openapi.json", timeout=10).json()
        for template, operations in document["paths"].items():
            if template not in OPEN_PATHS:
                found |= {(spec.name, method.upper(), template) for method in operations}
    return found


# -- tenant A's data ---------------------------------------------------------------------------


@dataclass
class Seeded:
    """A's ids (by path parameter name) and the canary every text of A's carries (never an id)."""

    canary: str
    ids: dict[str, str]
    secret: str


def _ok(reply: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert reply.status_code in (statuses or (200, 201, 202)), (reply.request.url, reply.text)
    return reply.json() if reply.content else {}


def a_response(canary: str, mark: str, account: str) -> dict[str, Any]:
    return {
        "response_id": f"resp-{mark}",
        "survey_id": "isolation",
        "customer": {
            "id": f"cust-{mark}",
            "email": f"{mark}@customers.example.com",
            "name": f"Customer {canary}",
            "locale": "en",
        },
        "account_id": account,
        "score": 2,
        "comment": f"complaint {canary}",
        "answered_at": "2026-01-01T10:00:00Z",
        "segments": {"product": "billing", "region": "PL", "channel": "email"},
    }


def template_body(text: str) -> dict[str, str]:
    return {
        "subject": f"Sorry {text}",
        "text": f"Dear customer, {text}.{{% if case.comment %}} {{{{ case.comment }}}}{{% endif %}}",
        "html": f"<p>Dear customer, {text}.</p>",
    }


def organisation(canary: str, person: str) -> dict[str, Any]:
    member = {"id": person, "name": f"Owner {canary}", "email": f"{person}@a.example.com"}
    team = {"id": "care", "name": f"Care {canary}", "members": [member], "queue": "care"}
    team["email"] = "care@a.example.com"
    return {"teams": [team]}


def seed(stack: Stack, client: httpx.Client, tenant: str) -> Seeded:
    canary = f"canary{uuid.uuid4().hex[:12]}"
    mark = uuid.uuid4().hex[:10]
    account, person, source = f"acct-{mark}", f"owner-{mark}", f"src-{mark}"
    ingest, scoring = stack.url("ingest"), stack.url("scoring")
    orchestrator, notifier = stack.url("orchestrator"), stack.url("notifier")
    secret = f"secret-{canary}"
    first = {"If-Match": '"0"'}

    _ok(
        client.put(
            f"{orchestrator}/v1/setup/organisation",
            json=organisation(canary, person),
            headers=first,
        )
    )
    # Apologies wait as drafts, so A has a draft (with the canary in its text) to hide.
    _ok(
        client.put(
            f"{notifier}/v1/settings",
            json={
                "detractor_approval": [{"mode": "approve"}],
                "review_url": f"https://reviews.example.com/{canary}",
            },
            headers=first,
        )
    )
    _ok(client.put(f"{notifier}/v1/templates/apology/en", json=template_body(canary)))
    _ok(client.put(f"{ingest}/v1/sources/{source}", json={"kind": "typeform", "secrets": [secret]}))
    body = a_response(canary, mark, account)
    _ok(client.post(f"{ingest}/v1/responses", json=body))
    _ok(client.put(f"{scoring}/v1/accounts/{account}/weight", json={"revenue_weight": 777}))
    opted_out = f"opt-{mark}@customers.example.com"
    _ok(client.post(f"{notifier}/v1/opt-outs", json={"email": opted_out}))
    _ok(
        client.put(
            f"{orchestrator}/v1/account-owners",
            json={"owners": [{"account_id": account, "owner_id": person}]},
        )
    )

    def case() -> dict[str, Any] | None:
        found = client.get(
            f"{orchestrator}/v1/cases", params={"response_id": body["response_id"]}
        ).json()["cases"]
        return found[0] if found else None

    case_id = eventually(case, what="A's case")["case_id"]

    def draft() -> dict[str, Any] | None:
        found = client.get(f"{notifier}/v1/drafts").json()["messages"]
        return found[0] if found else None

    draft_id = eventually(draft, what="A's apology draft")["message_id"]
    issue = _ok(
        client.post(
            f"{orchestrator}/v1/issues",
            json={
                "title": f"Issue {canary}",
                "description": f"about {canary}",
                "source": "cases",
                "case_ids": [case_id],
                "cost": 2,
            },
        )
    )
    issue_id = issue["issue_id"]
    action = _ok(
        client.post(
            f"{orchestrator}/v1/accounts/{account}/actions",
            json={"title": f"Action {canary}", "issue_id": issue_id},
        )
    )
    # The issue goes through to done: its "you said, we did" campaign is A's.
    for step in ("prioritise", "start"):
        etag = client.get(f"{orchestrator}/v1/issues/{issue_id}").headers["etag"]
        _ok(client.post(f"{orchestrator}/v1/issues/{issue_id}/{step}", headers={"If-Match": etag}))
    etag = client.get(f"{orchestrator}/v1/issues/{issue_id}").headers["etag"]
    done = {"locale": "en", "texts": {"en": {"title": f"Fixed {canary}", "summary": canary}}}
    _ok(
        client.post(
            f"{orchestrator}/v1/issues/{issue_id}/done", json=done, headers={"If-Match": etag}
        )
    )

    def finished_campaign() -> dict[str, Any] | None:
        found = client.get(f"{notifier}/v1/campaigns").json()["campaigns"]
        settled = [c for c in found if c["status"] not in ("expanding", "sending")]
        return settled[0] if settled else None

    campaign_id = eventually(finished_campaign, what="A's campaign")["campaign_id"]
    # An erasure of A's (of an address A never had: A's data stays for the sweep).
    nobody = {"email": f"nobody-{mark}@customers.example.com"}
    erasure_id = _ok(client.post(f"{ingest}/v1/privacy/erasures", json=nobody))["erasure_id"]
    return Seeded(
        canary=canary,
        secret=secret,
        ids={
            "response_id": body["response_id"],
            "case_id": case_id,
            "issue_id": issue_id,
            "action_id": action["action_id"],
            "account_id": account,
            "message_id": draft_id,
            "campaign_id": campaign_id,
            "name": source,
            "source": f"{tenant}.{source}",
            "email": opted_out,
            "kind": "apology",
            "locale": "en",
            "person_id": person,
            "dimension": "account",
            "theme": "billing",
            "token": f"not-a-token-{mark}",
            "customer_email": body["customer"]["email"],
            "customer_id": body["customer"]["id"],
            "erasure_id": erasure_id,
        },
    )


# -- the sweep ----------------------------------------------------------------------------------


def fill(value: Any, ids: Mapping[str, str]) -> Any:
    """`value` with every `{parameter}` replaced by A's id of that name."""
    if isinstance(value, str):
        for name, id_ in ids.items():
            value = value.replace("{" + name + "}", id_)
        return value
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


def own_body(kind: str, stack: Stack, client: httpx.Client) -> Any:
    """B's bodies that need more than a literal."""
    if kind == "RESPONSE":
        body = a_response("b's comment", uuid.uuid4().hex[:10], "b-account")
        body["customer"]["name"] = "B's customer"
        return body
    if kind == "INVITATIONS":
        invitation = {
            "invitation_id": f"inv-{uuid.uuid4().hex[:8]}",
            "survey_id": "isolation",
            "customer": {"id": "b-cust", "email": "b@customers.example.com"},
            "channel": "email",
            "invited_at": "2026-01-01T09:00:00Z",
        }
        return {"invitations": [invitation]}
    if kind == "ORGANISATION":
        return client.get(f"{stack.url('orchestrator')}/v1/setup/organisation").json()[
            "organisation"
        ]
    if kind == "TEMPLATE":
        return template_body("B's own")
    raise AssertionError(f"no body {kind}")


# What A reads of its own data before and after B's sweep: it must not change.
SNAPSHOT = [
    ("ingest", "/v1/responses/{response_id}"),
    ("ingest", "/v1/sources"),
    ("scoring", "/v1/accounts/{account_id}/nps"),
    ("orchestrator", "/v1/cases/{case_id}"),
    ("orchestrator", "/v1/cases/{case_id}/history"),
    ("orchestrator", "/v1/issues/{issue_id}"),
    ("orchestrator", "/v1/accounts/{account_id}/actions/{action_id}"),
    ("orchestrator", "/v1/account-owners"),
    ("orchestrator", "/v1/setup/organisation"),
    ("orchestrator", "/v1/setup/rules"),
    ("notifier", "/v1/messages/{message_id}"),
    ("notifier", "/v1/settings"),
    ("notifier", "/v1/templates/apology/en"),
    ("notifier", "/v1/campaigns/{campaign_id}"),
]


def snapshot(stack: Stack, client: httpx.Client, ids: Mapping[str, str]) -> dict[str, Any]:
    taken: dict[str, Any] = {}
    for service, template in SNAPSHOT:
        reply = client.get(stack.url(service) + fill(template, ids))
        assert reply.status_code == 200, (template, reply.text)
        taken[template] = (reply.json(), reply.headers.get("etag"))
    return taken


def test_no_route_of_any_service_lets_tenant_b_see_or_change_tenant_a_s_data(
    stack: Stack, bearer: Bearer
) -> None:
    run = uuid.uuid4().hex[:8]
    tenant_a, tenant_b = f"iso-a-{run}", f"iso-b-{run}"
    routes = api_routes(stack)
    assert routes - ROUTES.keys() == set(), "routes the sweep does not know: teach ROUTES"
    assert ROUTES.keys() - routes == set(), "routes the services no longer have"

    with (
        httpx.Client(headers=bearer(tenant_a, "admin"), timeout=10) as a,
        httpx.Client(headers=bearer(tenant_b, "admin"), timeout=10) as b,
    ):
        seeded = seed(stack, a, tenant_a)
        ids = seeded.ids
        before = snapshot(stack, a, ids)
        # The canary is in what A reads (so a route that leaked A's data would show it).
        assert seeded.canary in json.dumps(before)
        # Values of A's that B must never be shown unless it sent them itself.
        secrets = {seeded.canary, seeded.secret}
        a_ids = {v for k, v in ids.items() if k not in ("kind", "locale", "dimension", "theme")}
        failures: list[str] = []
        erasures: list[str] = []
        for (service, method, template), call in sorted(ROUTES.items()):
            path = fill(template, ids)
            query = fill(dict(call.query), ids)
            body = call.body
            if isinstance(body, str):
                body = own_body(body, stack, b)
            body = fill(body, ids)
            reply = b.request(
                method,
                stack.url(service) + path,
                params=query,
                json=body,
                headers={"If-Match": call.if_match} if method != "GET" else {},
            )
            sent = f"{path} {json.dumps(query)} {json.dumps(body)}"
            shown = [v for v in secrets if v in reply.text]
            shown += [v for v in a_ids if v in reply.text and v not in sent]
            where = f"{service} {method} {template} -> {reply.status_code}"
            expected = {
                "hidden": reply.status_code == 404,
                "own": reply.status_code < 400,
                "refused": reply.status_code in (404, 422),
                "signed": reply.status_code == 401,
                "token": reply.status_code == 404,
            }[call.expect]
            if not expected:
                failures.append(f"{where} (expected {call.expect}): {reply.text[:300]}")
            if (method, template) == ("POST", "/v1/privacy/erasures") and expected:
                erasures.append(stack.url(service) + reply.headers["location"])
            if shown:
                failures.append(f"{where} shows A's {shown}")
        for status in erasures:
            # B's erasure of the address of A's customer, done by all four services before A
            # reads its data again.

            def completed(status: str = status) -> bool | None:
                return b.get(status).json()["status"] == "completed" or None

            eventually(completed, what="B's erasure")
        after = snapshot(stack, a, ids)
        # A's opt-out is still there: A setting it again finds it (200, not 201).
        again = a.post(f"{stack.url('notifier')}/v1/opt-outs", json={"email": ids["email"]})

    assert failures == []
    changed = [t for t in before if before[t] != after[t]]
    assert changed == []
    assert again.status_code == 200, again.text
