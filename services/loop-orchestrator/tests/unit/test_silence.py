"""When an unanswered invitation opens a lack-of-response case (`domain/silence.py`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from closeloop_orchestrator.domain.silence import SilenceSpec, is_key_contact, silence_due

AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
KEY = frozenset({"acc-key"})


def due(spec: SilenceSpec, account: str | None = "acc-key", **attributes: str) -> datetime | None:
    return silence_due(
        spec, key_accounts=KEY, account_id=account, attributes=attributes, invited_at=AT
    )


def test_a_key_contact_of_a_key_account_is_due_after_the_window() -> None:
    assert due(SilenceSpec(), key_contact="true") == AT + timedelta(days=14)
    assert due(SilenceSpec(after_days=0.5), key_contact=" YES ") == AT + timedelta(hours=12)


@pytest.mark.parametrize(
    ("account", "attributes"),
    [
        ("acc-small", {"key_contact": "true"}),  # not a key account
        (None, {"key_contact": "true"}),  # no account
        ("acc-key", {}),  # not marked
        ("acc-key", {"key_contact": "false"}),
        ("acc-key", {"role": "true"}),  # another attribute
    ],
)
def test_anyone_else_is_never_due(account: str | None, attributes: dict[str, str]) -> None:
    assert due(SilenceSpec(), account, **attributes) is None


def test_silence_off_or_every_contact_key() -> None:
    assert due(SilenceSpec(enabled=False), key_contact="true") is None
    every = SilenceSpec(key_contact_attribute=None)
    assert due(every) == AT + timedelta(days=14)
    assert due(every, "acc-small") is None


def test_the_tenant_chooses_the_attribute_and_its_values() -> None:
    spec = SilenceSpec(key_contact_attribute="role", key_contact_values=frozenset({"sponsor"}))
    assert is_key_contact(spec, {"role": "Sponsor"})
    assert not is_key_contact(spec, {"role": "user", "key_contact": "true"})


@pytest.mark.parametrize(
    "bad",
    [
        {"after_days": 0},
        {"after_days": 366},
        {"key_contact_attribute": "Role"},
        {"key_contact_values": []},
        {"first_contact_hours": 0},
        {"priority": "asap"},
        {"unknown": 1},
    ],
)
def test_a_bad_spec_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SilenceSpec.model_validate(bad)
