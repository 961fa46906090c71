"""A lack-of-response case in the team's built-in templates: "no answer to <survey> (invited
<date>)" where an answered case shows its score, no comment block, never "None" or "-1"; and
tenant templates are validated against such a case too."""

from __future__ import annotations

from typing import Any

import pytest

from closeloop_notifier.domain.builtin_templates import builtin
from closeloop_notifier.domain.kinds import TEAM_KINDS, Kind
from closeloop_notifier.domain.no_response import invitation_of
from closeloop_notifier.domain.rendering import (
    Rendered,
    Renderer,
    TemplateRenderError,
    TemplateSource,
)
from closeloop_notifier.domain.samples import CASE_ID, sample_context, validation_contexts

RENDERER = Renderer()
CASE_KINDS = [Kind.OWNER_NEW_CASE, Kind.SLA_WARNING, Kind.SLA_BREACH, Kind.SLA_ESCALATION]
UNANSWERED = {
    "en": "No answer to relationship-2026 (invited November 20, 2026)",
    "pl": "Brak odpowiedzi na ankietę relacje-2026 (zaproszenie z 20 listopada 2026)",
}
UNKNOWN = {
    "en": "No answer to a survey invitation",
    "pl": "Brak odpowiedzi na zaproszenie do ankiety",
}


def render(kind: Kind, locale: str, *, sparse: bool = False, **case: Any) -> Rendered:
    context = sample_context(kind, locale, sparse=sparse, no_response=True)
    context["case"] = context.get("case", {}) | case
    return RENDERER.render(builtin(kind, locale), locale, context)


def parts(rendered: Rendered) -> str:
    return "\n".join((rendered.subject, rendered.text, rendered.html)).replace(str(CASE_ID), "")


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("locale", ["en", "pl"])
@pytest.mark.parametrize("kind", sorted(TEAM_KINDS))
def test_a_lack_of_response_case_shows_no_score_and_no_comment(
    kind: Kind, locale: str, sparse: bool
) -> None:
    shown = parts(render(kind, locale, sparse=sparse))

    for never in ("None", "-1", "/10", "Score", "Ocena", "comment", "komentarz"):
        assert never not in shown, never


@pytest.mark.parametrize("locale", ["en", "pl"])
@pytest.mark.parametrize("kind", CASE_KINDS)
def test_a_lack_of_response_case_says_what_was_not_answered(kind: Kind, locale: str) -> None:
    rendered = render(kind, locale)

    assert f"\n{UNANSWERED[locale]}\n" in rendered.text
    assert (
        f'<td colspan="2" style="padding:2px 0; vertical-align:top;">{UNANSWERED[locale]}</td>'
        in (rendered.html)
    )


@pytest.mark.parametrize("locale", ["en", "pl"])
@pytest.mark.parametrize("kind", CASE_KINDS)
def test_an_unknown_invitation_is_still_a_survey_left_unanswered(kind: Kind, locale: str) -> None:
    rendered = render(kind, locale, sparse=True)

    assert f"\n{UNKNOWN[locale]}\n" in rendered.text
    assert f">{UNKNOWN[locale]}</td>" in rendered.html


@pytest.mark.parametrize(
    ("locale", "subject", "opening", "contact"),
    [
        (
            "en",
            "New case: Zofia Wójcik, no answer to relationship-2026",
            "A new case is yours, for a key account: a key contact has not answered a survey "
            "for 14 days. Please contact them by 2:00\u202fPM on December 6, 2026.",
            "Contact: Zofia Wójcik <zofia.wojcik@example.pl>",
        ),
        (
            "pl",
            "Nowa sprawa: Zofia Wójcik, brak odpowiedzi na ankietę relacje-2026",
            "masz nową sprawę kluczowego klienta: kluczowa osoba kontaktowa od 14 dni nie "
            "odpowiada na ankietę. Skontaktuj się z nią najpóźniej 6 grudnia 2026 o godz. 14:00.",
            "Osoba kontaktowa: Zofia Wójcik <zofia.wojcik@example.pl>",
        ),
    ],
)
def test_the_owner_hears_who_is_silent_for_how_long_and_by_when_to_call(
    locale: str, subject: str, opening: str, contact: str
) -> None:
    rendered = render(Kind.OWNER_NEW_CASE, locale)

    assert rendered.subject == subject
    assert rendered.text.split("\n")[2] == opening
    assert f"\n{contact}\n" in rendered.text
    assert f'<p style="margin:0 0 16px;">{opening}</p>' in rendered.html


@pytest.mark.parametrize(
    ("locale", "days", "silent"),
    [
        ("pl", 1, "od 1 dnia nie odpowiada"),
        ("pl", 2, "od 2 dni nie odpowiada"),
        ("pl", 5, "od 5 dni nie odpowiada"),
        ("pl", 22, "od 22 dni nie odpowiada"),
        ("pl", 1.5, "od 1,5 dnia nie odpowiada"),
        ("en", 1, "has not answered a survey for 1 day."),
        ("en", 1.5, "has not answered a survey for 1.5 days."),
        ("en", 30, "has not answered a survey for 30 days."),
    ],
)
def test_the_silence_is_counted_in_the_right_plural_form(
    locale: str, days: float, silent: str
) -> None:
    assert silent in render(Kind.OWNER_NEW_CASE, locale, silent_days=days).text


def test_a_survey_name_is_text_in_the_html_part() -> None:
    rendered = render(Kind.SLA_BREACH, "en", survey_id="<b>nps</b>")

    assert "No answer to &lt;b&gt;nps&lt;/b&gt; (invited" in rendered.html
    assert "No answer to <b>nps</b> (invited" in rendered.text


@pytest.mark.parametrize("locale", ["en", "pl"])
def test_the_digest_marks_a_lack_of_response_case(locale: str) -> None:
    context = sample_context(Kind.OVERDUE_DIGEST, locale, no_response=True)
    rendered = RENDERER.render(builtin(Kind.OVERDUE_DIGEST, locale), locale, context)

    unanswered = {
        "en": "\n- Zofia Wójcik, no answer to a survey invitation: first contact was due ",
        "pl": "\n- Zofia Wójcik, brak odpowiedzi na zaproszenie do ankiety: pierwszy kontakt ",
    }[locale]
    assert unanswered in rendered.text
    assert rendered.text.count("no answer") + rendered.text.count("brak odpowiedzi") == 1
    answered = {
        "en": "\n- Jan Kowalski: resolution was due ",
        "pl": "\n- Jan Kowalski: rozwiązanie",
    }
    assert answered[locale] in rendered.text


def test_a_tenant_template_must_render_for_a_lack_of_response_case_too() -> None:
    needs_a_score = TemplateSource(subject="s", text="{{ case.score + 1 }} z 11", html="h")
    branches = TemplateSource(
        subject="s",
        text='{% if case.category == "no_response" %}{{ case.survey_id or "?" }}'
        "{% else %}{{ case.score + 1 }}{% endif %}",
        html="h",
    )
    contexts = validation_contexts(Kind.SLA_BREACH, "pl")

    assert [c["case"]["category"] for c in contexts] == [
        "detractor",
        "detractor",
        "no_response",
        "no_response",
    ]
    with pytest.raises(TemplateRenderError):
        RENDERER.validate(needs_a_score, "pl", contexts)
    RENDERER.validate(branches, "pl", contexts)


def test_a_lack_of_response_case_names_its_invitation_in_place_of_a_response() -> None:
    assert invitation_of("no-response:inv-42") == "inv-42"
    assert invitation_of("r-42") is None
    assert invitation_of("no-response:") is None
