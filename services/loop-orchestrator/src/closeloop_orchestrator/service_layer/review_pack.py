"""Gathering an account's quarterly review pack: scoring's figures for the account (asked with the
caller's token, side by side) and the orchestrator's own cases, actions and structural issues.

What scoring answers: the quarter's NPS against the previous quarter's (`/v1/nps/compare`), the
monthly trend over the last four quarters (`/v1/nps/trend`), the response rate and revenue weight
(`/v1/accounts/{id}/nps`), the top drivers (`/v1/drivers`) and the account's health
(`/v1/accounts/{id}/health`). Any of them that scoring cannot answer (unreachable, 5xx, a refusal,
an answer not understood, no health route yet) is null in the pack and named in `unavailable`,
with the reason in `unavailable_detail`: the pack is answered all the same, never a 500, and a
missing figure is never made up. An account with no data at all gets zeros and nulls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from closeloop_common.runtime import ServiceRuntime
from closeloop_orchestrator import account_views
from closeloop_orchestrator.adapters.scoring_client import ScoringClient, ScoringError
from closeloop_orchestrator.domain.review import Quarter, case_figures
from closeloop_orchestrator.metrics import REVIEW_SECTIONS_UNAVAILABLE
from closeloop_orchestrator.service_layer.setup_store import SetupStore

log = logging.getLogger(__name__)

TOP_DRIVERS: Final = 5
HEALTH_STATES: Final = frozenset({"safe", "at_risk", "unknown"})
SCORING_SECTIONS: Final = ("nps", "trend", "response_rate", "revenue_weight", "drivers", "health")
FIGURE_FIELDS: Final = (
    "n", "promoters", "passives", "detractors", "nps", "ci_low", "ci_high", "confidence",
    "method", "insufficient",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Review:
    """Whose review is asked for, of which quarter, and with which token scoring is asked."""

    tenant_id: str
    account_id: str
    quarter: Quarter
    authorization: str


@dataclass(frozen=True, slots=True)
class _Answer:
    section: str
    body: dict[str, Any] | None
    reason: str | None


async def gather(
    *,
    runtime: ServiceRuntime,
    store: SetupStore,
    scoring: ScoringClient,
    zone: ZoneInfo,
    review: Review,
) -> dict[str, Any]:
    """The review pack as the JSON route answers it (the HTML page renders the same)."""
    now = runtime.clock.now()
    own, answers = await asyncio.gather(
        _own(runtime, store, zone, review, now), _ask_scoring(scoring, review)
    )
    quarter = review.quarter
    shapes: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
        "nps": ("compare", _nps),
        "trend": ("trend", _trend),
        "response_rate": ("account", _response_rate),
        "revenue_weight": ("account", lambda body: body["revenue_weight"]),
        "drivers": ("drivers", _drivers),
        "health": ("health", _health),
    }
    sections: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for section, (asked, shape) in shapes.items():
        answer = answers[asked]
        if answer.body is None:
            sections[section], unavailable[section] = None, answer.reason or "no answer"
            continue
        try:
            sections[section] = shape(answer.body)
        except (KeyError, TypeError, ValueError) as exc:
            sections[section] = None
            unavailable[section] = f"scoring's answer was not understood: {exc!r:.200}"
    for section in unavailable:
        REVIEW_SECTIONS_UNAVAILABLE.labels(section=section).inc()
    if unavailable:
        log.warning(
            "review pack without some of scoring's figures",
            extra={"tenant_id": review.tenant_id, "sections": sorted(unavailable)},
        )
    previous = quarter.previous()
    return {
        "tenant_id": review.tenant_id,
        "generated_at": now,
        "account": {
            "id": review.account_id,
            "revenue_weight": sections.pop("revenue_weight"),
            "key_account": own["key_account"],
        },
        "quarter": quarter.as_json() | {"time_zone": zone.key, "previous": previous.as_json()},
        **sections,
        "cases": own["cases"],
        "actions": own["actions"],
        "issues": own["issues"],
        "unavailable": [s for s in SCORING_SECTIONS if s in unavailable],
        "unavailable_detail": unavailable,
    }


# --- scoring ------------------------------------------------------------------------------------


async def _ask_scoring(scoring: ScoringClient, review: Review) -> dict[str, _Answer]:
    quarter, token, account = review.quarter, review.authorization, review.account_id
    days = (quarter.first, quarter.end)
    previous = quarter.previous()
    filters = {"account": account}
    questions: dict[str, Awaitable[dict[str, Any]]] = {
        "account": scoring.account_nps(
            authorization=token, account_id=account, first=days[0], end=days[1]
        ),
        "compare": scoring.compare(
            authorization=token,
            filters=filters,
            days=days,
            baseline_days=(previous.first, previous.end),
        ),
        "trend": scoring.trend(
            authorization=token, filters=filters, first=quarter.trend_days()[0], end=days[1]
        ),
        "drivers": scoring.drivers(
            authorization=token, filters=filters, first=days[0], end=days[1]
        ),
        "health": scoring.account_health(
            authorization=token, account_id=account, first=days[0], end=days[1]
        ),
    }
    found = await asyncio.gather(*(_ask(name, q) for name, q in questions.items()))
    return {answer.section: answer for answer in found}


async def _ask(name: str, question: Awaitable[dict[str, Any]]) -> _Answer:
    try:
        return _Answer(name, await question, None)
    except ScoringError as exc:
        return _Answer(name, None, str(exc)[:300])


def _figure(side: dict[str, Any]) -> dict[str, Any]:
    return {name: side[name] for name in FIGURE_FIELDS}


def _nps(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "current": _figure(body["compared"]),
        "previous": _figure(body["baseline"]),
        "comparison": body["comparison"],
    }


def _trend(body: dict[str, Any]) -> dict[str, Any]:
    points = []
    for point in body["points"]:
        first = date.fromisoformat(point["from"])
        points.append(
            {
                "month": first.strftime("%Y-%m"),
                "from": first,
                "to": date.fromisoformat(point["to"]),
                **_figure(point),
            }
        )
    window = body["window"]
    return {
        "granularity": body["granularity"],
        "from": date.fromisoformat(window["from"]),
        "to": date.fromisoformat(window["to"]),
        "points": points,
    }


def _response_rate(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "invitations": int(body["invitations"]),
        "answers": int(body["n"]),
        "rate": body["response_rate"],
    }


def _drivers(body: dict[str, Any]) -> list[dict[str, Any]]:
    keep = ("theme", "source", "mentions", "share_of_detractors", "nps_impact", "impact_low",
            "impact_high")  # fmt: skip
    return [{name: d[name] for name in keep} for d in body["drivers"][:TOP_DRIVERS]]


def _health(body: dict[str, Any]) -> dict[str, Any]:
    if body["state"] not in HEALTH_STATES:
        raise ValueError(f"unknown health state {body['state']!r:.40}")
    reasons = body["reasons"]
    if not isinstance(reasons, list) or not all(isinstance(r, dict) for r in reasons):
        raise TypeError("the reasons are not a list of objects")
    return {k: v for k, v in body.items() if k != "tenant_id"}


# --- the orchestrator's own ---------------------------------------------------------------------


async def _own(
    runtime: ServiceRuntime, store: SetupStore, zone: ZoneInfo, review: Review, now: datetime
) -> dict[str, Any]:
    start, end = review.quarter.bounds(zone)
    tenant, account = review.tenant_id, review.account_id
    async with runtime.sessions() as session:
        organisation = (await store.current(session, tenant)).setup.organisation
        rows = await account_views.review_cases(
            session=session, tenant_id=tenant, account_id=account, start=start, end=end
        )
        actions = await account_views.review_actions(
            session=session, tenant_id=tenant, account_id=account, start=start, end=end,
            today=now.astimezone(zone).date(),
        )  # fmt: skip
        issues = await account_views.review_issues(
            session=session, tenant_id=tenant, account_id=account, start=start, end=end
        )
    figures = case_figures(rows, start=start, end=end, now=now)
    return {
        "key_account": account in organisation.key_accounts,
        "cases": figures.as_json(),
        "actions": actions,
        "issues": issues,
    }
