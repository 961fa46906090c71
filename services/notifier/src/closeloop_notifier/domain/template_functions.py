"""What templates can call: dates, times, numbers, durations and plural forms in the message's
language (Babel, CLDR data), and quoting of customer text.

Every function reads the language from the template's `locale` variable and, for times, the
zone from `tenant.time_zone` (or a `tz=` argument); each is a filter and a global
(`{{ format_date(case.first_contact_due_at) }}` or `{{ case.first_contact_due_at | format_date }}`):

- `format_date(value, format="long", tz=None)`: "6 grudnia 2026" (Polish months in the genitive,
  as CLDR has them), "December 6, 2026"; a date and time is first put in the zone;
- `format_datetime(value, format="medium", tz=None)`, `format_time(value, format="short", tz=None)`;
- `format_number(value, format=None)`: "1 234,5";
- `format_timedelta(value, format="long", add_direction=False)`: a timedelta or seconds,
  "3 godziny", "za 3 godziny", "3 godziny temu";
- `plural(n, one=, few=, many=, other=, zero=, two=)`: the form of `n`'s CLDR plural category
  in the language (Polish 1 sprawa, 2 sprawy, 5 spraw, 22 sprawy, 1,5 sprawy: `other`), falling
  back to `other`, then `many`, when that category was not given;
- `quote` (plain text: "> " before each line) and `nl2br` (HTML: the text escaped, its line
  breaks kept as <br>).

The Babel functions print "" for None (an optional date absent). Formatting a date is memoised:
a message prints the same deadline in its text and its HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

FALLBACK_LOCALE = "en"


@lru_cache(maxsize=64)
def _babel_locale(tag: str) -> Locale:
    try:
        return Locale.parse(tag, sep="-" if "-" in tag else "_")
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(FALLBACK_LOCALE)


def _tag_of(context: Context) -> str:
    tag = context.get("locale")
    return tag if isinstance(tag, str) else FALLBACK_LOCALE


def _locale_of(context: Context) -> Locale:
    return _babel_locale(_tag_of(context))


def _zone_of(context: Context, tz: str | None) -> str | None:
    if tz is not None:
        return tz
    tenant = context.get("tenant")
    return tenant.get("time_zone") if isinstance(tenant, Mapping) else None


@lru_cache(maxsize=4096)
def _moment(
    what: Literal["date", "datetime", "time"],
    value: date | datetime,
    format: str,
    tag: str,
    zone_name: str | None,
) -> str:
    """Babel's formatting, memoised (Babel's pattern formatting is most of the time of a team
    message, which prints its deadlines in the text and again in the HTML)."""
    locale = _babel_locale(tag)
    zone: tzinfo = ZoneInfo(zone_name) if zone_name else UTC
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if what == "date":
        if isinstance(value, datetime):
            value = value.astimezone(zone).date()
        return str(babel_dates.format_date(value, format, locale=locale))
    if not isinstance(value, datetime):
        raise TypeError(f"format_{what}() needs a date and time, not {type(value).__name__}")
    if what == "datetime":
        return str(babel_dates.format_datetime(value, format, tzinfo=zone, locale=locale))
    return str(babel_dates.format_time(value, format, tzinfo=zone, locale=locale))


@pass_context
def format_date(
    context: Context, value: date | datetime | None, format: str = "long", tz: str | None = None
) -> str:
    if value is None:
        return ""
    return _moment("date", value, format, _tag_of(context), _zone_of(context, tz))


@pass_context
def format_datetime(
    context: Context, value: datetime | None, format: str = "medium", tz: str | None = None
) -> str:
    if value is None:
        return ""
    return _moment("datetime", value, format, _tag_of(context), _zone_of(context, tz))


@pass_context
def format_time(
    context: Context, value: datetime | None, format: str = "short", tz: str | None = None
) -> str:
    if value is None:
        return ""
    return _moment("time", value, format, _tag_of(context), _zone_of(context, tz))


@pass_context
def format_number(context: Context, value: float | None, format: str | None = None) -> str:
    if value is None:
        return ""
    return str(babel_numbers.format_decimal(value, format=format, locale=_locale_of(context)))


@pass_context
def format_timedelta(
    context: Context,
    value: timedelta | float | None,
    format: Literal["narrow", "short", "long"] = "long",
    add_direction: bool = False,
    threshold: float = 0.85,
) -> str:
    """A duration in words ("3 godziny"); `add_direction`: "za 3 godziny" / "3 godziny temu"
    for a positive / negative one."""
    if value is None:
        return ""
    if not isinstance(value, timedelta):
        value = timedelta(seconds=value)
    return str(
        babel_dates.format_timedelta(
            value,
            threshold=threshold,
            format=format,
            add_direction=add_direction,
            locale=_locale_of(context),
        )
    )


@pass_context
def plural(
    context: Context,
    n: float,
    *,
    zero: str | None = None,
    one: str | None = None,
    two: str | None = None,
    few: str | None = None,
    many: str | None = None,
    other: str | None = None,
) -> str:
    """The form of `n`'s CLDR plural category in the language (see the module docstring)."""
    forms = {"zero": zero, "one": one, "two": two, "few": few, "many": many, "other": other}
    category = _locale_of(context).plural_form(abs(n))
    chosen = forms.get(category) or other or many
    if chosen is None:
        raise ValueError(f"plural() has no form for {category!r} ({n}): give other=")
    return chosen


def quote(value: str | None) -> str:
    """Plain-text quotation: "> " before every line (">" alone for a blank one)."""
    if not value:
        return ""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in value.strip().splitlines())


def nl2br(value: str | None) -> Markup:
    """HTML: the text escaped, its line breaks kept as <br>."""
    if not value:
        return Markup("")
    lines = [escape(line) for line in value.strip().splitlines()]
    return Markup("<br>\n").join(lines)


_FORMATTERS: dict[str, Callable[..., Any]] = {
    "format_date": format_date,
    "format_datetime": format_datetime,
    "format_time": format_time,
    "format_number": format_number,
    "format_timedelta": format_timedelta,
}
FILTERS: dict[str, Callable[..., Any]] = {**_FORMATTERS, "quote": quote, "nl2br": nl2br}
GLOBALS: dict[str, Callable[..., Any]] = {**_FORMATTERS, "plural": plural}
