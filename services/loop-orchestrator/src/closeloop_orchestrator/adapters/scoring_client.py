"""Scoring's read API over HTTP: the what-if of a structural issue's NPS impact, the responses
its theme was found in, the figures of an account's quarterly review pack, and the comparison of
two windows' NPS (a done issue's segment before and after, for the loop's impact).

The question is asked with the caller's own token (the `Authorization` header of the request
that creates or re-estimates the issue): scoring verifies it and answers for that token's tenant
only, with that token's scopes (it needs `read`). The orchestrator holds no token of its own, so
no request can read another tenant's figures through it.

Failures are classified, never raised as anything else: `ScoringUnavailable` (connection refused,
timeout, scoring's 5xx) and `ScoringRefused` (scoring's 4xx: the token lacks `read`, an unknown
filter). An answer that projects nothing (no responses in the segment) is `None`, not an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx

from closeloop_common import tracing
from closeloop_orchestrator.domain.backlog import impact_of_what_if

WHAT_IF = "/v1/what-if"
THEME_RESPONSES = "/v1/themes/{theme}/responses"
COMPARE = "/v1/nps/compare"
THEME_SCENARIO = "theme-detractors-become-passives"


class ScoringError(Exception):
    """Scoring gave no estimate."""


class ScoringUnavailable(ScoringError):
    """Scoring could not be reached or failed."""


class ScoringRefused(ScoringError):
    """Scoring refused the question (4xx)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"scoring answered {status}: {detail}")
        self.status = status


@dataclass(frozen=True, slots=True)
class ThemeResponses:
    """The ids of the responses (detractors and passives) that mention a theme, newest first."""

    response_ids: tuple[str, ...]
    truncated: bool


@dataclass(frozen=True, slots=True)
class WhatIfAnswer:
    """Scoring's answer: the change in NPS points with its interval (None: nothing to project),
    and what it was computed over."""

    points: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    today_nps: float | None
    projected_nps: float | None
    confidence: float
    method: str
    window: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NpsFigure:
    """One side of a comparison: the NPS (None without answers) with its interval, the number of
    answers and scoring's window ({from, to, time_zone})."""

    n: int
    nps: float | None
    ci_low: float | None
    ci_high: float | None
    window: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NpsComparison:
    """Scoring's comparison: `difference` is compared minus baseline (None when a side has no
    answer, and then so are `p_value` and `significant`)."""

    compared: NpsFigure
    baseline: NpsFigure
    difference: float | None
    p_value: float | None
    significant: bool | None
    method: str
    confidence: float


class ScoringClient:
    """Asks scoring: the what-if and reads. `client` replaces the HTTP client (a test's ASGI
    transport)."""

    def __init__(
        self, base_url: str, *, timeout: float, client: httpx.AsyncClient | None = None
    ) -> None:
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._timeout = timeout

    async def aclose(self) -> None:
        await self._client.aclose()

    async def theme_what_if(
        self,
        *,
        authorization: str,
        theme: str,
        filters: Mapping[str, str],
        window: str = "90d",
    ) -> WhatIfAnswer:
        """The NPS change if the detractors who mention `theme` in the segment were passives."""
        body = {
            "scenario": {"kind": THEME_SCENARIO, "theme": theme},
            "filters": dict(filters),
            "window": window,
        }
        request = self._client.build_request(
            "POST", WHAT_IF, json=body, headers={"Authorization": authorization},
            timeout=self._timeout,
        )  # fmt: skip
        found = await self._send(request)
        try:
            return _parse(found)
        except (ValueError, KeyError, TypeError) as exc:
            raise ScoringUnavailable(f"scoring's answer is not a what-if: {exc}") from exc

    async def theme_responses(
        self,
        *,
        authorization: str,
        theme: str,
        filters: Mapping[str, str],
        window: str = "90d",
    ) -> ThemeResponses:
        """The responses of the segment whose customers complained about `theme`."""
        found = await self.get(
            THEME_RESPONSES.format(theme=_segment(theme)),
            authorization=authorization,
            params={**filters, "window": window},
        )
        try:
            ids = found["response_ids"]
            if not all(isinstance(i, str) for i in ids):
                raise TypeError("response ids are text")
            return ThemeResponses(tuple(ids), bool(found["truncated"]))
        except (KeyError, TypeError) as exc:
            raise ScoringUnavailable(f"scoring's answer is not a response list: {exc}") from exc

    async def _send(self, request: httpx.Request) -> Any:
        """Scoring's JSON answer; ScoringUnavailable or ScoringRefused (module docstring). With
        tracing on, the question carries the caller's trace (`traceparent`): scoring's span of
        it joins the request's trace."""
        carried = tracing.carrier_of()
        if carried is not None:
            request.headers["traceparent"] = carried[0]
            if carried[1]:
                request.headers["tracestate"] = carried[1]
        try:
            answer = await self._client.send(request)
        except httpx.HTTPError as exc:
            raise ScoringUnavailable(f"scoring unreachable: {type(exc).__name__}: {exc}") from exc
        if answer.status_code >= 500:
            raise ScoringUnavailable(f"scoring answered {answer.status_code}")
        if answer.status_code >= 400:
            raise ScoringRefused(answer.status_code, _detail(answer))
        try:
            return answer.json()
        except ValueError as exc:
            raise ScoringUnavailable(f"scoring's answer is not JSON: {exc}") from exc

    async def get(
        self, path: str, *, authorization: str, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Scoring's JSON answer to a read (a JSON object), asked with the caller's token."""
        request = self._client.build_request(
            "GET", path, params=dict(params or {}), headers={"Authorization": authorization},
            timeout=self._timeout,
        )  # fmt: skip
        found = await self._send(request)
        if not isinstance(found, dict):
            raise ScoringUnavailable("scoring's answer is not a JSON object")
        return found

    # Windows are local days [first, end) in scoring's time zone: its `to` is exclusive.

    async def account_nps(
        self, *, authorization: str, account_id: str, first: date, end: date
    ) -> dict[str, Any]:
        """`GET /v1/accounts/{id}/nps`: the account's figures, response rate and revenue weight."""
        return await self.get(
            f"/v1/accounts/{_segment(account_id)}/nps",
            authorization=authorization,
            params=_days(first, end),
        )

    async def compare(
        self,
        *,
        authorization: str,
        filters: Mapping[str, str],
        days: tuple[date, date],
        baseline_days: tuple[date, date],
        confidence: float | None = None,
    ) -> dict[str, Any]:
        """`GET /v1/nps/compare`: the segment over `days` against itself over `baseline_days`."""
        params = {**filters, **_days(*days)}
        params |= {"baseline_from": baseline_days[0].isoformat(),
                   "baseline_to": baseline_days[1].isoformat()}  # fmt: skip
        if confidence is not None:
            params["confidence"] = str(confidence)
        return await self.get(COMPARE, authorization=authorization, params=params)

    async def compare_nps(
        self,
        *,
        authorization: str,
        filters: Mapping[str, str],
        compared: tuple[date, date],
        baseline: tuple[date, date],
        confidence: float,
    ) -> NpsComparison:
        """`compare`, read: both sides' NPS with their intervals and the difference's p-value."""
        found = await self.compare(
            authorization=authorization,
            filters=filters,
            days=compared,
            baseline_days=baseline,
            confidence=confidence,
        )
        try:
            return _comparison(found)
        except (ValueError, KeyError, TypeError) as exc:
            raise ScoringUnavailable(f"scoring's answer is not a comparison: {exc}") from exc

    async def trend(
        self,
        *,
        authorization: str,
        filters: Mapping[str, str],
        first: date,
        end: date,
        granularity: str = "month",
    ) -> dict[str, Any]:
        """`GET /v1/nps/trend`: the segment's NPS per bucket, each with its interval."""
        params = {**filters, **_days(first, end), "granularity": granularity}
        return await self.get("/v1/nps/trend", authorization=authorization, params=params)

    async def drivers(
        self, *, authorization: str, filters: Mapping[str, str], first: date, end: date
    ) -> dict[str, Any]:
        """`GET /v1/drivers`: themes and root causes, the biggest NPS impact first."""
        params = {**filters, **_days(first, end)}
        return await self.get("/v1/drivers", authorization=authorization, params=params)

    async def account_health(
        self, *, authorization: str, account_id: str, first: date, end: date
    ) -> dict[str, Any]:
        """`GET /v1/accounts/{id}/health`: whether the account is safe or at risk, and why."""
        return await self.get(
            f"/v1/accounts/{_segment(account_id)}/health",
            authorization=authorization,
            params=_days(first, end),
        )


def _segment(value: str) -> str:
    return quote(value, safe="")


def _days(first: date, end: date) -> dict[str, str]:
    return {"from": first.isoformat(), "to": end.isoformat()}


def _detail(answer: httpx.Response) -> str:
    try:
        found = answer.json()
    except ValueError:
        return answer.text[:200]
    if isinstance(found, dict):
        return str(found.get("detail") or found.get("title") or "")[:200]
    return ""


def _parse(body: Any) -> WhatIfAnswer:
    today = body["today"]
    change = impact_of_what_if(
        today=today["nps"],
        projected=body["projected_nps"],
        ci_low=body["ci_low"],
        ci_high=body["ci_high"],
    )
    points, low, high = change if change is not None else (None, None, None)
    return WhatIfAnswer(
        points=None if points is None else round(points, 2),
        ci_low=None if low is None else round(low, 2),
        ci_high=None if high is None else round(high, 2),
        n=int(today["n"]),
        today_nps=today["nps"],
        projected_nps=body["projected_nps"],
        confidence=float(body["confidence"]),
        method=str(body["method"]),
        window=dict(body["window"]),
    )


def _figure(side: Any) -> NpsFigure:
    return NpsFigure(
        n=int(side["n"]),
        nps=side["nps"],
        ci_low=side["ci_low"],
        ci_high=side["ci_high"],
        window=dict(side["window"]),
    )


def _comparison(body: Any) -> NpsComparison:
    found = body["comparison"]
    compared = body["compared"]
    return NpsComparison(
        compared=_figure(compared),
        baseline=_figure(body["baseline"]),
        difference=None if found is None else float(found["difference"]),
        p_value=None if found is None else float(found["p_value"]),
        significant=None if found is None else bool(found["significant"]),
        method=str(compared["method"]),
        confidence=float(compared["confidence"]),
    )
