"""The notifier's settings: the From address is checked and normalised when the process starts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from closeloop_notifier.config import NotifierSettings


def test_from_address_is_kept_in_its_normal_form() -> None:
    settings = NotifierSettings(notifier_from_address="Care@ACME.Example")

    assert settings.notifier_from_address == "Care@acme.example"


@pytest.mark.parametrize(
    "address", ["a@[b.c", "care@acme.example, boss@acme.example", "Care <care@acme.example>"]
)
def test_from_address_that_is_not_one_mailbox_refuses_to_start(address: str) -> None:
    with pytest.raises(ValidationError, match="not a valid e-mail address"):
        NotifierSettings(notifier_from_address=address)
