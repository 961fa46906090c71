"""Rendering a message from its template: subject, plain text and HTML in the customer's language.

Pure: given a template's source (`TemplateSource`), a language and a context (plain dicts, see
`domain.samples` for every kind's), the `Rendered` message, or a `TemplateRenderError` listing
what failed (part and line) in words fit for a 422.

The template language is Jinja2 in the sandbox of `domain.sandbox`: HTML is autoescaped, the
subject and text are not (plain text is not HTML) but are just as sandboxed. Customer text is
only ever a context value, never template source. Templates call the functions of
`domain.template_functions` (dates, numbers and plurals in the message's language, quoting).

The subject is one line (line breaks and control characters become spaces, at most 250
characters); the text part gets tidy line ends and at most one blank line in a row.

Compiled templates are cached by their source (an LRU per `Renderer`), so rendering is the
cost of running the template, not of compiling it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from traceback import extract_tb
from typing import Any, Literal

from jinja2 import Template, TemplateSyntaxError

from closeloop_notifier.domain.kinds import Audience, Kind, audience_of
from closeloop_notifier.domain.sandbox import TemplateEnvironment, metered
from closeloop_notifier.domain.template_functions import FILTERS, GLOBALS

SUPPORTED_LOCALES = ("pl", "en")
DEFAULT_LOCALE = "en"
SUBJECT_MAX_CHARS = 250
Part = Literal["subject", "text", "html"]


@dataclass(frozen=True, slots=True)
class TemplateSource:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    locale: str


@dataclass(frozen=True, slots=True)
class RenderProblem:
    """One thing that failed: the part, Jinja's message, and the template line when known."""

    part: Part
    message: str
    line: int | None

    def describe(self) -> str:
        where = f"{self.part}, line {self.line}" if self.line else self.part
        return f"{where}: {self.message}"

    def json(self) -> dict[str, Any]:
        return {"part": self.part, "line": self.line, "message": self.message}


class TemplateRenderError(Exception):
    """The template does not compile or does not render; `problems` says where and why."""

    def __init__(self, problems: Sequence[RenderProblem]) -> None:
        super().__init__("; ".join(p.describe() for p in problems))
        self.problems = tuple(problems)


# -- language and salutation ------------------------------------------------------------------


def _language(tag: str | None) -> str | None:
    if not tag:
        return None
    language = re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()
    return language if language in SUPPORTED_LOCALES else None


def choose_locale(customer_locale: str | None, tenant_default: str | None) -> str:
    """The customer's language when supported (`pl`, `pl-PL` -> `pl`), else the tenant's
    default language when supported, else English."""
    return _language(customer_locale) or _language(tenant_default) or DEFAULT_LOCALE


def salutation(locale: str, first_name: str | None, audience: Audience) -> str:
    """The greeting line. English names the person when known ("Dear Anna," / "Hi Ewa,").
    Polish is "Dzień dobry," for everyone: a name in Polish needs the vocative and the gender
    ("Pani Anno"), which we do not know, and "Cześć" is too familiar for work messages."""
    if locale == "pl":
        return "Dzień dobry,"
    name = " ".join((first_name or "").split())
    if not name:
        return "Hello,"
    return f"Dear {name}," if audience == "customer" else f"Hi {name},"


def first_name(name: Any) -> str | None:
    """The first word of a name (what a salutation uses), None without one."""
    words = name.split() if isinstance(name, str) else []
    return words[0] if words else None


def customer_context(customer_id: str, name: str | None, email: str | None) -> dict[str, Any]:
    """The `customer` of a template context."""
    return {"id": customer_id, "name": name, "first_name": first_name(name), "email": email}


def greeting_for(kind: Kind, locale: str, context: Mapping[str, Any]) -> str:
    """The `greeting` of a message's context: the salutation of its recipient, who is the
    customer (`customer.first_name`), the case's owner (new case), the person alerted
    (`alert.recipient_name`) or the digest's owner, by first name."""
    name: str | None
    if audience_of(kind) == "customer":
        name = first_name((context.get("customer") or {}).get("first_name"))
    elif kind is Kind.OWNER_NEW_CASE:
        owner = (context.get("case") or {}).get("owner")
        name = first_name(owner.get("name")) if isinstance(owner, Mapping) else None
    elif kind is Kind.OVERDUE_DIGEST:
        name = first_name((context.get("digest") or {}).get("owner_name"))
    else:
        name = first_name((context.get("alert") or {}).get("recipient_name"))
    return salutation(locale, name, audience_of(kind))


# -- output tidying ---------------------------------------------------------------------------

_NOT_IN_A_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BLANK_RUN = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def one_line(subject: str) -> str:
    """The subject as one header line: breaks and control characters become single spaces."""
    return " ".join(_NOT_IN_A_LINE.sub(" ", subject).split())[:SUBJECT_MAX_CHARS].rstrip()


def tidy_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n") + "\n"
    text = _BLANK_RUN.sub("\n\n", _TRAILING_SPACE.sub("\n", text))
    return text.strip("\n") + "\n"


# -- the renderer -----------------------------------------------------------------------------


def _problem(part: Part, exc: Exception) -> RenderProblem:
    if isinstance(exc, TemplateSyntaxError):
        return RenderProblem(part, exc.message or str(exc), exc.lineno)
    line = None
    for frame in extract_tb(exc.__traceback__):
        if frame.filename == "<template>":
            line = frame.lineno
    message = str(exc) or type(exc).__name__
    return RenderProblem(part, message[:500], line)


class Renderer:
    """Renders `TemplateSource`s; holds the two environments and the compiled-template cache.
    Thread-safe (validation may run in a worker thread while messages render)."""

    def __init__(self, *, cache_size: int = 1024) -> None:
        self._environments = {html: TemplateEnvironment(html=html) for html in (False, True)}
        for environment in self._environments.values():
            environment.filters.update(FILTERS)
            environment.globals.update(GLOBALS)
        self._cached = lru_cache(maxsize=cache_size)(self._compile)

    def _compile(self, html: bool, source: str) -> Template:
        environment = self._environments[html]
        ast = environment.parse(source)
        for message, line in environment.refused_constructs(ast):
            raise TemplateSyntaxError(message, line)
        return environment.from_string(ast)

    def _part(
        self, html: bool, source: str, locale: str, context: Mapping[str, Any], cache: bool
    ) -> str:
        template = self._cached(html, source) if cache else self._compile(html, source)
        return metered(template.generate(context, locale=locale))

    def render(
        self,
        source: TemplateSource,
        locale: str,
        context: Mapping[str, Any],
        *,
        cache: bool = True,
    ) -> Rendered:
        """The message in `locale` (the template's `locale` variable, whatever `context`
        says); `cache=False` for drafts, which are compiled once and dropped."""
        parts: dict[Part, str] = {}
        problems: list[RenderProblem] = []
        sources: tuple[tuple[Part, str, bool], ...] = (
            ("subject", source.subject, False),
            ("text", source.text, False),
            ("html", source.html, True),
        )
        for part, text, html in sources:
            try:
                parts[part] = self._part(html, text, locale, context, cache)
            except Exception as exc:  # a tenant's template may fail in any way: report it
                problems.append(_problem(part, exc))
        if problems:
            raise TemplateRenderError(problems)
        return Rendered(
            subject=one_line(parts["subject"]),
            text=tidy_text(parts["text"]),
            html=parts["html"].strip() + "\n",
            locale=locale,
        )

    def validate(
        self, source: TemplateSource, locale: str, contexts: Sequence[Mapping[str, Any]]
    ) -> None:
        """Renders `source` with each context (uncached); `TemplateRenderError` with every
        distinct problem when any fails."""
        problems: list[RenderProblem] = []
        for context in contexts:
            try:
                self.render(source, locale, context, cache=False)
            except TemplateRenderError as exc:
                problems += [p for p in exc.problems if p not in problems]
        if problems:
            order: tuple[Part, ...] = ("subject", "text", "html")
            problems.sort(key=lambda p: (order.index(p.part), p.line or 0))
            raise TemplateRenderError(problems)
