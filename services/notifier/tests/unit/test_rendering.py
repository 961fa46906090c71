"""Rendering messages: every built-in template in both languages, Polish plurals and dates,
customer text that stays text, tenant templates that cannot leave the sandbox, one-line
subjects, and the choice of language and salutation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from markupsafe import escape

from closeloop_notifier.domain.builtin_templates import builtin
from closeloop_notifier.domain.kinds import CUSTOMER_KINDS, Kind
from closeloop_notifier.domain.rendering import (
    Rendered,
    Renderer,
    TemplateRenderError,
    TemplateSource,
    choose_locale,
    salutation,
)
from closeloop_notifier.domain.samples import sample_context, validation_contexts

RENDERER = Renderer()
HOSTILE = "<script>alert(1)</script>"
UNSUBSCRIBE = sample_context(Kind.THANKS, "pl")["unsubscribe_url"]
INJECTIONS = [
    "{{ 7*7 }}",
    "{% raw %}",
    "{{ ''.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "${7*7} #{7*7} {%- endraw %}",
]


def render(kind: Kind, locale: str, **changes: Any) -> Rendered:
    context = sample_context(kind, locale)
    for path, value in changes.items():
        target = context
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return RENDERER.render(builtin(kind, locale), locale, context)


def text_only(template: str, locale: str = "pl", **context: Any) -> str:
    source = TemplateSource(subject="s", text=template, html="h")
    return RENDERER.render(
        source, locale, {"tenant": {"time_zone": "Europe/Warsaw"}} | context
    ).text


@pytest.mark.parametrize("locale", ["pl", "en"])
@pytest.mark.parametrize("kind", list(Kind))
def test_every_built_in_template_renders_with_every_sample(kind: Kind, locale: str) -> None:
    for context in validation_contexts(kind, locale):
        rendered = RENDERER.render(builtin(kind, locale), locale, context)

        assert rendered.locale == locale
        assert rendered.subject
        assert "\n" not in rendered.subject
        assert rendered.text.startswith(context["greeting"] + "\n\n")
        assert "\n\n\n" not in rendered.text
        assert f'<html lang="{locale}">' in rendered.html
        if kind in CUSTOMER_KINDS:
            link = context["unsubscribe_url"]
            assert (link is not None) == (UNSUBSCRIBE in rendered.text)
            assert (link is not None) == (f'href="{UNSUBSCRIBE}"' in rendered.html)


def test_a_template_without_its_optional_parts_is_still_a_message() -> None:
    context = sample_context(Kind.APOLOGY, "pl", sparse=True)
    rendered = RENDERER.render(builtin(Kind.APOLOGY, "pl"), "pl", context)

    assert rendered.text.startswith("Dzień dobry,\n\ndziękujemy za szczerą odpowiedź")
    assert "Napisali Państwo" not in rendered.text
    assert "Napiszemy do Państwa najpóźniej 6 grudnia 2026 o godz. 14:00" in rendered.text
    assert "zrezygnować" not in rendered.text


def test_the_apology_quotes_the_comment_names_the_owner_and_says_when_and_how() -> None:
    polish = render(Kind.APOLOGY, "pl").text
    by_email = render(Kind.APOLOGY, "pl", case__channel="email").text
    english = render(Kind.APOLOGY, "en").text

    assert "Napisali Państwo:\n> Zamówione nasiona przyszły po tygodniu,\n> a połowa" in polish
    assert "Nazywam się Ewa Zielińska" in polish
    assert "Zadzwonię do Państwa najpóźniej 6 grudnia 2026 o godz. 14:00" in polish
    assert "Napiszę do Państwa najpóźniej" in by_email
    assert "I will call you by 2:00\u202fPM on December 6, 2026, to" in english  # CLDR's space
    assert english.startswith("Dear Zofia,\n\nThank you")


def test_thanks_links_the_tenants_review_and_referral_pages() -> None:
    rendered = render(Kind.THANKS, "pl")
    no_links = render(Kind.THANKS, "pl", tenant__review_url=None, tenant__referral_url=None)

    assert "Opinię można wystawić tutaj: https://opinie.example/zielony-ogrod" in rendered.text
    assert 'href="https://zielonyogrod.example/polec"' in rendered.html
    assert "będziemy wdzięczni za polecenie" in no_links.text
    assert "href=" not in no_links.text


def test_a_rejected_change_says_why_and_a_done_one_what_was_done() -> None:
    done, _sparse, rejected = (
        RENDERER.render(builtin(Kind.CHANGE_SUMMARY, "pl"), "pl", context)
        for context in validation_contexts(Kind.CHANGE_SUMMARY, "pl")
    )

    assert done.subject == "Zmiana, o którą Państwo prosili: Szybsza dostawa zamówień"
    assert "Co zrobiliśmy:\nZamówienia złożone do 14:00" in done.text
    assert rejected.subject == "Odpowiedź na Państwa sugestię: Szybsza dostawa zamówień"
    assert "Dlaczego nie wprowadzamy tej zmiany:\nKurier" in rejected.text


def test_case_resolved_tells_what_was_done() -> None:
    rendered = render(Kind.CASE_RESOLVED, "en")

    assert "What we did:\nWe sent a new batch of seeds" in rendered.text
    assert rendered.text.count("Ewa Zielińska") == 1


@pytest.mark.parametrize(
    ("count", "subject"),
    [
        (1, "Masz 1 zaległą sprawę"),
        (2, "Masz 2 zaległe sprawy"),
        (5, "Masz 5 zaległych spraw"),
        (12, "Masz 12 zaległych spraw"),
        (22, "Masz 22 zaległe sprawy"),
        (25, "Masz 25 zaległych spraw"),
    ],
)
def test_the_polish_digest_counts_its_cases_in_the_right_plural_form(
    count: int, subject: str
) -> None:
    assert render(Kind.OVERDUE_DIGEST, "pl", digest__count=count).subject == subject


def test_the_english_digest_counts_its_cases() -> None:
    assert render(Kind.OVERDUE_DIGEST, "en", digest__count=1).subject == "You have 1 overdue case"
    assert render(Kind.OVERDUE_DIGEST, "en").subject == "You have 3 overdue cases"


@pytest.mark.parametrize(
    ("n", "form"),
    [(0, "spraw"), (1, "sprawa"), (2, "sprawy"), (4, "sprawy"), (5, "spraw"), (11, "spraw"),
     (22, "sprawy"), (25, "spraw"), (102, "sprawy"), (1.5, "sprawy")],
)  # fmt: skip
def test_plural_picks_the_cldr_category_of_the_locale(n: float, form: str) -> None:
    template = '{{ plural(n, one="sprawa", few="sprawy", many="spraw", other="sprawy") }}'

    assert text_only(template, n=n) == form + "\n"


def test_plural_in_english_and_its_fallback_to_other() -> None:
    template = '{{ plural(n, one="case", other="cases") }}'

    assert [text_only(template, "en", n=n) for n in (1, 2, 0)] == ["case\n", "cases\n", "cases\n"]
    assert text_only('{{ plural(5, one="sprawa", other="spraw") }}') == "spraw\n"


def test_dates_are_in_the_locale_and_the_tenants_time_zone() -> None:
    late_evening = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)  # 00:30 on the 7th in Warsaw
    template = "{{ format_date(at) }} | {{ format_time(at) }} | {{ format_date(at, tz='UTC') }}"

    assert text_only(template, at=late_evening) == "7 grudnia 2026 | 00:30 | 6 grudnia 2026\n"
    assert text_only("{{ at | format_date }}", "en", at=late_evening) == "December 7, 2026\n"
    assert text_only("{{ format_date(at, 'full') }}", at=late_evening) == (
        "poniedziałek, 7 grudnia 2026\n"
    )
    assert text_only("{{ format_datetime(at, 'short') }}", at=late_evening) == "7.12.2026, 00:30\n"
    assert text_only("{{ format_date(none) }}|", none=None) == "|\n"


def test_numbers_and_durations_are_in_the_locale() -> None:
    assert text_only("{{ format_number(1234.5) }}") == "1\u00a0234,5\n"
    assert text_only("{{ format_number(1234.5) }}", "en") == "1,234.5\n"
    assert text_only("{{ format_timedelta(5 * 3600) }}") == "5 godzin\n"
    assert text_only("{{ format_timedelta(-7200, add_direction=True) }}") == "2 godziny temu\n"


def test_quote_prefixes_every_line() -> None:
    assert text_only("{{ c | quote }}", c="one\n\ntwo\n") == "> one\n>\n> two\n"


def test_a_hostile_comment_is_escaped_in_html_and_plain_in_text() -> None:
    rendered = render(Kind.APOLOGY, "en", case__comment=HOSTILE)

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<script>" not in rendered.html
    assert f"> {HOSTILE}\n" in rendered.text


@pytest.mark.parametrize("payload", INJECTIONS)
def test_template_code_in_customer_text_stays_literal(payload: str) -> None:
    rendered = render(
        Kind.OWNER_NEW_CASE, "en", case__comment=payload, customer__name=payload + " Nowak"
    )

    assert f"> {payload}\n" in rendered.text
    assert f"Customer: {payload} Nowak" in rendered.text
    assert rendered.subject.startswith(f"New case: {payload} Nowak")
    assert str(escape(payload)) in rendered.html
    assert "49" not in rendered.text + rendered.html


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ namespace }}",
        "{{ tenant.__class__ }}",
        "{{ 'a {0.__class__}'.format(tenant) }}",
        "{{ [].append(1) }}",
        "{% for i in range(10**6) %}{% endfor %}",
        "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
        "{{ 'a' * 10**7 }}",
        "{{ 2 ** 100000 }}",
        "{{ '%999999d' % 1 }}",
        "{{ 'x' | center(10**8) }}",
        "{{ 'ab' | replace('', 'x' * 90000) }}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}",
    ],
)
def test_a_tenant_template_cannot_leave_the_sandbox_or_exhaust_it(template: str) -> None:
    source = TemplateSource(subject="s", text=template, html="h")

    with pytest.raises(TemplateRenderError) as refused:
        RENDERER.render(source, "pl", sample_context(Kind.APOLOGY, "pl"))

    assert [p.part for p in refused.value.problems] == ["text"]
    assert "<module" not in str(refused.value)
    assert "<function" not in str(refused.value)


def test_html_may_not_turn_escaping_off() -> None:
    for html in ("{{ case.comment | safe }}", "{% autoescape false %}x{% endautoescape %}"):
        source = TemplateSource(subject="s", text="t", html=html)
        with pytest.raises(TemplateRenderError) as refused:
            RENDERER.render(source, "pl", sample_context(Kind.APOLOGY, "pl"))
        assert refused.value.problems[0].part == "html"


def test_an_unknown_name_or_a_syntax_error_is_reported_with_its_part_and_line() -> None:
    source = TemplateSource(
        subject="{{ case.score }",
        text="Hello\n\n{{ customer.nickname }}",
        html="<p>\n{{ unknown }}</p>",
    )

    with pytest.raises(TemplateRenderError) as refused:
        RENDERER.validate(source, "pl", validation_contexts(Kind.APOLOGY, "pl"))

    problems = [(p.part, p.line) for p in refused.value.problems]
    assert problems == [("subject", 1), ("text", 3), ("html", 2)]
    assert "nickname" in refused.value.problems[1].message
    assert str(refused.value).startswith("subject, line 1: ")


def test_a_template_that_needs_an_optional_value_fails_validation() -> None:
    source = TemplateSource(subject="s", text="{{ case.owner.name }}", html="h")

    with pytest.raises(TemplateRenderError):
        RENDERER.validate(source, "pl", validation_contexts(Kind.APOLOGY, "pl"))


def test_the_subject_is_one_line_of_at_most_250_characters() -> None:
    subject = "{{ customer.name }}\r\nBcc: x@example.com\u2028\x0bnext \t word\n"
    source = TemplateSource(subject=subject, text="t", html="h")
    context = sample_context(Kind.APOLOGY, "pl")
    long = TemplateSource(subject="{{ 'ab ' * 200 }}", text="t", html="h")

    assert (
        RENDERER.render(source, "pl", context).subject
        == "Zofia Wójcik Bcc: x@example.com next word"
    )
    assert len(RENDERER.render(long, "pl", context).subject) <= 250


@pytest.mark.parametrize(
    ("customer", "tenant", "chosen"),
    [("pl", None, "pl"), ("pl-PL", "en", "pl"), ("PL_pl", None, "pl"), ("en-GB", "pl", "en"),
     ("de-DE", "pl-PL", "pl"), ("de", "fr", "en"), (None, None, "en"), ("", "pl", "pl")],
)  # fmt: skip
def test_the_language_is_the_customers_else_the_tenants_else_english(
    customer: str | None, tenant: str | None, chosen: str
) -> None:
    assert choose_locale(customer, tenant) == chosen


def test_salutations_read_naturally_in_each_language() -> None:
    assert salutation("en", "Zofia", "customer") == "Dear Zofia,"
    assert salutation("en", None, "customer") == "Hello,"
    assert salutation("en", " Ewa ", "team") == "Hi Ewa,"
    assert salutation("pl", "Zofia", "customer") == "Dzień dobry,"
    assert salutation("pl", "Ewa", "team") == "Dzień dobry,"


def test_there_is_no_built_in_template_in_an_unsupported_language() -> None:
    with pytest.raises(ValueError, match="de"):
        builtin(Kind.THANKS, "de")
