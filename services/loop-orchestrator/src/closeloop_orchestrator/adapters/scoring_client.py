"""Scoring's what-if, asked over HTTP for a structural issue's NPS impact, and its comparison of
two windows' NPS, for the NPS of a done issue's segment before and after (the loop's impact).

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

import httpx

from closeloop_orchestrator.domain.backlog import impact_of_what_if

WHAT_IF = "/v1/what-if"
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
    """Asks scoring's what-if. `client` replaces the HTTP client (a test's ASGI transport)."""

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
        answer = await self._ask("POST", WHAT_IF, authorization, json=body)
        try:
            return _parse(answer.json())
        except (ValueError, KeyError, TypeError) as exc:
            raise ScoringUnavailable(f"scoring's answer is not a what-if: {exc}") from exc

    async def compare_nps(
        self,
        *,
        authorization: str,
        filters: Mapping[str, str],
        compared: tuple[date, date],
        baseline: tuple[date, date],
        confidence: float,
    ) -> NpsComparison:
        """The segment's NPS over the local days [first, end) of `compared` against those of
        `baseline`, with the difference's p-value (scoring's `/v1/nps/compare`)."""
        params = {
            **filters,
            "from": compared[0].isoformat(),
            "to": compared[1].isoformat(),
            "baseline_from": baseline[0].isoformat(),
            "baseline_to": baseline[1].isoformat(),
            "confidence": str(confidence),
        }
        answer = await self._ask("GET", COMPARE, authorization, params=params)
        try:
            return _comparison(answer.json())
        except (ValueError, KeyError, TypeError) as exc:
            raise ScoringUnavailable(f"scoring's answer is not a comparison: {exc}") from exc

    async def _ask(
        self, method: str, path: str, authorization: str, **request: Any
    ) -> httpx.Response:
        """Scoring's answer, or ScoringUnavailable (unreachable, 5xx) / ScoringRefused (4xx)."""
        try:
            answer = await self._client.request(
                method,
                path,
                headers={"Authorization": authorization},
                timeout=self._timeout,
                **request,
            )
        except httpx.HTTPError as exc:
            raise ScoringUnavailable(f"scoring unreachable: {type(exc).__name__}: {exc}") from exc
        if answer.status_code >= 500:
            raise ScoringUnavailable(f"scoring answered {answer.status_code}")
        if answer.status_code >= 400:
            raise ScoringRefused(answer.status_code, _detail(answer))
        return answer


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
