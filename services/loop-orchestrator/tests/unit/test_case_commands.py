"""A case's commands checked in themselves: notes, root-cause tags, re-survey delays, owners, times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from closeloop_common.events import Playbook
from closeloop_orchestrator.domain.case_commands import (
    MAX_NOTE_CHARS,
    MAX_ROOT_CAUSES,
    AddRootCauses,
    Claim,
    Close,
    Command,
    ContactChannel,
    ContactOutcome,
    InvalidCommand,
    LogContact,
    Priority,
    Reassign,
    Reopen,
    ResolutionOutcome,
    Resolve,
    Retype,
    normalise_tag,
)

WARSAW = ZoneInfo("Europe/Warsaw")

NOTED: list[Callable[[str], Command]] = [
    lambda note: Reassign("ola", note),
    lambda note: LogContact(ContactChannel.PHONE, ContactOutcome.REACHED, note),
    lambda note: Resolve(ResolutionOutcome.SOLVED, note),
    lambda note: Close(note),
    lambda note: Reopen(note),
]


@pytest.mark.parametrize("make", NOTED)
@pytest.mark.parametrize("note", ["", "   \n\t "])
def test_a_status_change_needs_a_note(make: Callable[[str], Command], note: str) -> None:
    with pytest.raises(InvalidCommand, match="needs a note"):
        make(note)


@pytest.mark.parametrize("make", NOTED)
def test_a_note_has_at_most_4000_characters(make: Callable[[str], Command]) -> None:
    make("x" * MAX_NOTE_CHARS)
    with pytest.raises(InvalidCommand, match="at most 4000 characters"):
        make("x" * (MAX_NOTE_CHARS + 1))


def test_notes_are_trimmed_and_optional_ones_may_be_blank() -> None:
    assert Resolve(ResolutionOutcome.SOLVED, "  Refund sent.\n").note == "Refund sent."
    assert Claim("ala").note is None
    assert Claim("ala", "   ").note is None
    assert LogContact(ContactChannel.SMS, ContactOutcome.NO_ANSWER, " ").note is None
    with pytest.raises(InvalidCommand, match="at most"):
        Claim("ala", "x" * (MAX_NOTE_CHARS + 1))
    with pytest.raises(InvalidCommand, match="at most"):
        LogContact(ContactChannel.SMS, ContactOutcome.NO_ANSWER, "x" * (MAX_NOTE_CHARS + 1))


@pytest.mark.parametrize(
    ("raw", "tag"),
    [
        ("Delivery", "delivery"),
        ("  late   delivery\t", "late delivery"),
        ("ZŁA_obsługa-2", "zła_obsługa-2"),
        ("x" * 50, "x" * 50),
    ],
)
def test_a_tag_is_normalised(raw: str, tag: str) -> None:
    assert normalise_tag(raw) == tag


@pytest.mark.parametrize("raw", ["", "   ", "x" * 51, "price/quality", "a,b", "#1", "emoji 🙂"])
def test_a_malformed_tag_is_refused(raw: str) -> None:
    with pytest.raises(InvalidCommand, match="root-cause tag"):
        normalise_tag(raw)


def test_root_causes_are_normalised_into_a_set_of_one_to_twenty() -> None:
    assert AddRootCauses(["Delivery", " delivery ", "PRICE"]).tags == {"delivery", "price"}
    with pytest.raises(InvalidCommand, match="at most 20"):
        AddRootCauses([f"tag {i}" for i in range(MAX_ROOT_CAUSES + 1)])
    with pytest.raises(InvalidCommand, match="at least one"):
        AddRootCauses([])
    with pytest.raises(InvalidCommand, match="not one string"):
        AddRootCauses("delivery")


@pytest.mark.parametrize("days", [0, -1, 366, True])
def test_a_resurvey_is_one_to_365_days_away(days: int) -> None:
    with pytest.raises(InvalidCommand, match=r"1\.\.365 days"):
        Close("Confirmed.", days)


@pytest.mark.parametrize("days", [1, 365])
def test_a_resurvey_may_be_one_day_or_a_year_away(days: int) -> None:
    assert Close("Confirmed.", days).resurvey_after_days == days


def test_an_owner_is_never_blank_and_none_means_the_queue() -> None:
    assert Reassign(None, "Back to the team.").owner_id is None
    with pytest.raises(InvalidCommand):
        Claim(" ")
    with pytest.raises(InvalidCommand):
        Reassign("", "Handing over.")


def test_deadlines_in_commands_are_aware_and_kept_in_utc() -> None:
    local = datetime(2026, 11, 23, 10, 0, tzinfo=WARSAW)
    retype = Retype(Playbook.IMPROVEMENT_ASK, Priority.NORMAL, local, local)
    assert retype.first_contact_due_at == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert retype.first_contact_due_at.tzinfo == UTC
    assert Reopen("Back.", local).resolution_due_at == retype.first_contact_due_at
    naive = datetime(2026, 11, 23, 10, 0)
    with pytest.raises(InvalidCommand, match="aware"):
        Retype(Playbook.IMPROVEMENT_ASK, Priority.NORMAL, naive, None)
    with pytest.raises(InvalidCommand, match="aware"):
        Reopen("Back.", naive)
