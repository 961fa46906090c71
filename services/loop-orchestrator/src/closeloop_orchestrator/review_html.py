"""The review pack as a readable, printable HTML page (Polish or English): the same pack the JSON
route answers, rendered with `templates/review_pack.html`.

Everything a tenant or its customers wrote (action titles and notes, owners' names, driver and
issue names, health reasons) is escaped: the environment autoescapes every value, and nothing
from the data is ever compiled as a template. Numbers and dates follow the page's language
(babel); the trend is an inline SVG drawn from the points' coordinates computed here, with a
table of the same figures. No script, no external asset: the page prints on A4 as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, format_percent
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from closeloop_orchestrator.review_labels import LABELS, VALUES, Language

_ENVIRONMENT: Final = Environment(
    loader=PackageLoader("closeloop_orchestrator", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
DASH: Final = "—"


class Formatter:
    """Numbers and dates as the page's language writes them; `—` for an unknown value."""

    def __init__(self, language: Language, zone: ZoneInfo) -> None:
        self.locale = language
        self.zone = zone

    def number(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return DASH
        return format_decimal(value, format="#,##0." + "0" * digits, locale=self.locale)

    def integer(self, value: int | float | None) -> str:
        if value is None:
            return DASH
        return format_decimal(value, format="#,##0.##", locale=self.locale)

    def signed(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return DASH
        pattern = "#,##0." + "0" * digits
        return format_decimal(value, format=f"+{pattern};-{pattern}", locale=self.locale)

    def percent(self, value: float | None) -> str:
        if value is None:
            return DASH
        return format_percent(value, format="#,##0.0%", locale=self.locale)

    def day(self, value: date | str | None) -> str:
        if value is None:
            return DASH
        day = date.fromisoformat(value) if isinstance(value, str) else value
        return format_date(day, format="medium", locale=self.locale)

    def instant(self, value: datetime | None) -> str:
        if value is None:
            return DASH
        return format_datetime(value, format="medium", tzinfo=self.zone, locale=self.locale)

    def month(self, value: date) -> str:
        return format_date(value, format="LLL yyyy", locale=self.locale)


@dataclass(frozen=True, slots=True)
class ChartPoint:
    x: float
    y: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Chart:
    """The trend drawn on a fixed NPS scale from -100 (bottom) to 100 (top)."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    ticks: tuple[tuple[int, float], ...]  # (NPS, y) of the horizontal grid lines
    labels: tuple[tuple[float, date], ...]  # (x, month) under the axis
    points: tuple[ChartPoint, ...]
    lines: tuple[str, ...]  # SVG polyline points of each run of months with answers


def chart(points: Sequence[Mapping[str, Any]], *, width: int = 680, height: int = 240) -> Chart:
    """Coordinates of the trend: one column per month, a dot at its NPS with its interval as a
    vertical bar, a line through consecutive months with answers (none through a gap)."""
    left, right, top, bottom = 44, width - 12, 12, height - 28

    def y_of(nps: float) -> float:
        return round(top + (100 - nps) / 200 * (bottom - top), 1)

    step = (right - left) / max(len(points), 1)
    drawn: list[ChartPoint] = []
    labels: list[tuple[float, date]] = []
    lines: list[str] = []
    run: list[str] = []
    for index, point in enumerate(points):
        x = round(left + step * (index + 0.5), 1)
        labels.append((x, point["from"]))
        if point["nps"] is None:
            if len(run) > 1:
                lines.append(" ".join(run))
            run = []
            continue
        low = point["ci_low"] if point["ci_low"] is not None else point["nps"]
        high = point["ci_high"] if point["ci_high"] is not None else point["nps"]
        drawn.append(ChartPoint(x, y_of(point["nps"]), y_of(low), y_of(high)))
        run.append(f"{x},{y_of(point['nps'])}")
    if len(run) > 1:
        lines.append(" ".join(run))
    return Chart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        ticks=tuple((nps, y_of(nps)) for nps in (100, 50, 0, -50, -100)),
        labels=tuple(labels),
        points=tuple(drawn),
        lines=tuple(lines),
    )


def render(pack: Mapping[str, Any], language: Language) -> str:
    """The page of `pack` (as `review_pack.gather` made it) in `language`."""
    zone = ZoneInfo(pack["quarter"]["time_zone"])
    values = VALUES[language]
    trend = pack.get("trend")
    return _ENVIRONMENT.get_template("review_pack.html").render(
        pack=pack,
        lang=language,
        t=LABELS[language],
        f=Formatter(language, zone),
        named=lambda value: values.get(value, value),
        chart=None if trend is None else chart(trend["points"]),
        quarter_last=pack["quarter"]["to"] - timedelta(days=1),
    )
