"""The campaign's pure rules: identity, transitions, throttle, language and salutation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_common.events import ChangeAudience, ChangeSummaryV1, ChangeText
from closeloop_notifier.domain.change_summary import (
    CAMPAIGN_STATUSES,
    Reader,
    TransitionRefused,
    campaign_id_of,
    choose_text,
    slots,
    template_context,
    transition,
)

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def change(locale: str = "pl", **translations: ChangeText) -> ChangeSummaryV1:
    return ChangeSummaryV1(
        change_id="faktury",
        status="done",
        locale=locale,
        text=ChangeText(title=f"tytuł-{locale}", summary="zrobione"),
        translations=translations,
        audience=ChangeAudience(response_ids=("r-1",)),
        decided_by="ewa",
        decided_at=AT,
    )


def test_the_same_event_is_the_same_campaign_and_tenants_never_share_one() -> None:
    assert campaign_id_of("acme", "e-1") == campaign_id_of("acme", "e-1")
    assert campaign_id_of("acme", "e-1") != campaign_id_of("acme", "e-2")
    assert campaign_id_of("acme", "e-1") != campaign_id_of("other", "e-1")


@pytest.mark.parametrize(
    ("status", "action", "expanded", "after"),
    [
        ("expanding", "pause", False, "paused"),
        ("sending", "pause", True, "paused"),
        ("paused", "pause", False, None),
        ("paused", "resume", False, "expanding"),
        ("paused", "resume", True, "sending"),
        ("sending", "resume", True, None),
        ("expanding", "cancel", False, "cancelled"),
        ("paused", "cancel", True, "cancelled"),
        ("cancelled", "cancel", True, None),
    ],
)
def test_transitions(status: str, action: str, expanded: bool, after: str | None) -> None:
    assert transition(status, action, expanded=expanded) == after  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "action"),
    [("done", "pause"), ("done", "resume"), ("done", "cancel"), ("cancelled", "resume")],
)
def test_a_finished_campaign_refuses_to_change(status: str, action: str) -> None:
    with pytest.raises(TransitionRefused):
        transition(status, action, expanded=True)  # type: ignore[arg-type]


def test_every_status_is_known() -> None:
    assert set(CAMPAIGN_STATUSES) == {"expanding", "sending", "paused", "done", "cancelled"}


@given(
    first=st.integers(min_value=0, max_value=500),
    second=st.integers(min_value=0, max_value=500),
    rate=st.floats(min_value=0.5, max_value=10_000),
)
def test_pages_of_slots_continue_one_schedule_at_the_rate(
    first: int, second: int, rate: float
) -> None:
    due_1, next_1 = slots(AT, first, rate)
    due_2, next_2 = slots(next_1, second, rate)
    whole, next_whole = slots(AT, first + second, rate)
    assert len(due_1) + len(due_2) == first + second
    for one, other in zip(due_1 + due_2, whole, strict=True):
        assert abs(one - other) <= timedelta(microseconds=2)
    assert abs(next_2 - next_whole) <= timedelta(microseconds=2)


def test_slots_are_one_over_the_rate_apart() -> None:
    due, after = slots(AT, 3, 4.0)
    assert due == [AT, AT + timedelta(seconds=0.25), AT + timedelta(seconds=0.5)]
    assert after == AT + timedelta(seconds=0.75)


def test_a_customer_reads_their_translation_else_the_events_text() -> None:
    english = ChangeText(title="title-en", summary="done")
    summary = change("pl", en=english)
    assert choose_text(summary, "en").text == english
    assert choose_text(summary, "en").language == "en"
    assert choose_text(summary, "en-GB").text == english
    assert choose_text(summary, "pl-PL").text.title == "tytuł-pl"
    assert choose_text(summary, "pl-PL").language == "pl"
    assert choose_text(summary, "de").text.title == "tytuł-pl"
    assert choose_text(summary, "de").language == "pl"
    assert choose_text(summary, None).language == "pl"


def test_an_exact_regional_translation_wins_over_the_language() -> None:
    british = ChangeText(title="colour")
    summary = change("en-US", **{"en-GB": british})
    assert choose_text(summary, "en-GB").text == british
    assert choose_text(summary, "en-us").text.title == "tytuł-en-US"
    assert choose_text(summary, "en").text.title == "tytuł-en-US"


def test_the_template_context_of_a_reader() -> None:
    english = ChangeText(title="Readable invoices", summary="Every line on its own.")
    tenant = {"company_name": "Acme"}
    reader = Reader("anna", "Anna Nowak", "anna@klient.example.pl", "en-GB")
    language, context = template_context(change("pl", en=english), reader, tenant=tenant, now=AT)
    assert language == "en"
    assert context == {
        "now": AT,
        "tenant": tenant,
        "customer": {
            "id": "anna",
            "name": "Anna Nowak",
            "first_name": "Anna",
            "email": "anna@klient.example.pl",
        },
        "change": {
            "title": "Readable invoices",
            "status": "done",
            "summary": "Every line on its own.",
            "reason": None,
            "you_said": None,
        },
        "unsubscribe_url": None,
    }
