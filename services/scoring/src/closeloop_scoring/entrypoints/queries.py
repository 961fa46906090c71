"""Query parameters every read takes: segment filters, a window of local days, statistics.

Custom attributes are filtered by a repeated `attribute=<name>:<value>` (the value may hold
colons); only the attributes scoring is configured to score (`SCORING_ATTRIBUTES`) can be asked
for, and another name is a 400 problem that lists them."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Query

from closeloop_common.events import ATTRIBUTE_NAME_PATTERN, Dimension
from closeloop_common.web import Problem
from closeloop_scoring.domain import windows
from closeloop_scoring.domain.aggregation import ATTRIBUTE_DIMENSION_PREFIX
from closeloop_scoring.domain.statistics import DEFAULT_CONFIDENCE, Method
from closeloop_scoring.domain.windows import WindowName
from closeloop_scoring.views import Days, Filters

_SEGMENT = {"min_length": 1, "max_length": 200}
_NAME = ATTRIBUTE_NAME_PATTERN.strip("^$")
ATTRIBUTE_FILTER = re.compile(rf"^{_NAME}:.{{1,100}}$")
BREAKDOWN = re.compile(
    rf"^(survey|account|product|region|channel|touchpoint|"
    rf"{re.escape(ATTRIBUTE_DIMENSION_PREFIX)}{_NAME})$"
)
AttributeFilters = Annotated[
    list[str] | None,
    Query(
        description="a custom attribute's value, `<name>:<value>` (e.g. `plan:gold`); repeat "
        "for several. Only the attributes scoring is configured to score",
        examples=[["plan:gold"]],
    ),
]
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


@dataclass(frozen=True, slots=True)
class FilterQuery:
    survey: Annotated[str | None, Query(**_SEGMENT)] = None
    account: Annotated[str | None, Query(**_SEGMENT)] = None
    product: Annotated[str | None, Query(**_SEGMENT)] = None
    region: Annotated[str | None, Query(**_SEGMENT)] = None
    channel: Annotated[str | None, Query(**_SEGMENT)] = None
    touchpoint: Annotated[str | None, Query(**_SEGMENT)] = None
    attribute: AttributeFilters = None

    def filters(self, scored: Collection[str]) -> Filters:
        """The filters asked for; `scored` are the custom attributes that can be asked for."""
        return Filters(
            self.survey,
            self.account,
            self.product,
            self.region,
            self.channel,
            self.touchpoint,
            attribute_pairs(self.attribute or (), scored),
        )


def attribute_pairs(given: Sequence[str], scored: Collection[str]) -> tuple[tuple[str, str], ...]:
    """`name:value` filters as sorted pairs; a name given twice with different values, or one
    that is not scored, is a 400 problem."""
    pairs: dict[str, str] = {}
    for text in given:
        if ATTRIBUTE_FILTER.match(text) is None:
            raise Problem(
                400,
                "invalid-attribute-filter",
                "Invalid attribute filter",
                f"expected `<name>:<value>`, got {text!r:.120}",
            )
        name, value = text.split(":", 1)
        check_attribute(name, scored)
        if pairs.setdefault(name, value) != value:
            raise Problem(
                400,
                "conflicting-filters",
                "Conflicting filters",
                f"attribute {name!r} is given two values",
            )
    return tuple(sorted(pairs.items()))


def check_attribute(name: str, scored: Collection[str]) -> None:
    """A 400 problem naming the scored attributes unless `name` is one of them."""
    if name not in scored:
        configured = ", ".join(sorted(scored)) or "none"
        raise Problem(
            400,
            "unknown-attribute",
            "Unknown attribute",
            f"attribute {name!r} is not scored; the scored attributes (SCORING_ATTRIBUTES) "
            f"are: {configured}",
            scored_attributes=sorted(scored),
        )


def breakdown_dimension(by: str, scored: Collection[str]) -> str:
    """`by` of a breakdown: a built-in filter name, or `attr.<name>` of a scored attribute."""
    if by.startswith(ATTRIBUTE_DIMENSION_PREFIX):
        check_attribute(by.removeprefix(ATTRIBUTE_DIMENSION_PREFIX), scored)
    return by


def with_legacy_segment(filters: Filters, dimension: Dimension, segment: str | None) -> Filters:
    """`dimension=region&segment=PL` (the first version's form) is `region=PL`."""
    if dimension == "overall" or segment is None:
        return filters
    if filters.given().get(dimension, segment) != segment:
        raise Problem(
            400,
            "conflicting-filters",
            "Conflicting filters",
            f"segment={segment!r} and {dimension}= name different {dimension}s",
        )
    values = {**filters.given(), dimension: segment}
    return Filters.of(values)


@dataclass(frozen=True, slots=True)
class WindowQuery:
    window: Annotated[
        WindowName | None,
        Query(
            description="a named window: rolling 7/30/90 local days (today included), this or "
            "the previous calendar month or quarter, or all time"
        ),
    ] = None
    days: Annotated[
        int | None, Query(ge=1, le=3660, description="rolling window of N local days to today")
    ] = None
    month: Annotated[
        str | None, Query(pattern=MONTH.pattern, description="a calendar month, e.g. 2026-11")
    ] = None
    quarter: Annotated[
        str | None, Query(pattern=QUARTER.pattern, description="a calendar quarter: 2026-Q4")
    ] = None
    first: Annotated[date | None, Query(alias="from", description="first local day, inclusive")] = (
        None
    )
    end: Annotated[
        date | None, Query(alias="to", description="local day the window ends before (exclusive)")
    ] = None

    def given(self) -> list[str]:
        named = {
            "window": self.window,
            "days": self.days,
            "month": self.month,
            "quarter": self.quarter,
        }
        found = [k for k, v in named.items() if v is not None]
        if self.first is not None or self.end is not None:
            found.append("from/to")
        return found

    def resolve(self, *, now: datetime, zone: ZoneInfo, default: WindowName = "all") -> Days:
        """The local days [first, end) asked for; one way of naming a window at most."""
        given = self.given()
        if len(given) > 1:
            raise invalid_window(f"name the window one way, not {' and '.join(given)}")
        if self.first is not None and self.end is not None and self.end <= self.first:
            raise invalid_window("`to` must be after `from`")
        try:
            period = windows.resolve(
                self.window or (None if given else default),
                days=self.days,
                month=_year_and(MONTH, self.month),
                quarter=_year_and(QUARTER, self.quarter),
                first=self.first,
                end=self.end,
                now=now,
                tz=zone,
            )
        except ValueError as exc:
            raise invalid_window(str(exc)) from exc
        if period is None:  # all time, or from/to with one side open
            return Days(self.first, self.end)
        return Days(*windows.local_days(period, zone))


def _year_and(pattern: re.Pattern[str], value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    found = pattern.match(value)
    if found is None:  # the query's pattern refused it already
        raise ValueError(f"not a valid window: {value!r}")
    return int(found.group(1)), int(found.group(2))


def invalid_window(detail: str) -> Problem:
    return Problem(400, "invalid-window", "Invalid window", detail)


def window_json(days: Days, zone: ZoneInfo) -> dict[str, Any]:
    return {"from": days.first, "to": days.end, "time_zone": zone.key}


MethodQuery = Annotated[
    Method,
    Query(description="interval method: adjusted-wald (better coverage for small samples) or wald"),
]
Confidence = Annotated[
    float, Query(gt=0.5, lt=1.0, description="confidence level of the interval and the test")
]
DEFAULT_METHOD: Method = "adjusted-wald"
__all__ = ["DEFAULT_CONFIDENCE"]
