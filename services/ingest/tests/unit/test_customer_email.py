"""The customer's e-mail address is validated and normalised when a response is accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from closeloop_ingest.domain.responses import CanonicalResponse


def payload(email: str | None) -> dict[str, Any]:
    return {
        "response_id": "r-1",
        "survey_id": "s-2024",
        "customer": {"id": "c-42", "email": email, "name": "Anna Nowak"},
        "score": 3,
        "answered_at": datetime(2024, 5, 6, 9, 0, tzinfo=UTC).isoformat(),
    }


@pytest.mark.parametrize(
    "email",
    [
        "a@[b.c",  # passes the contract's pattern, then breaks the To header
        "anna,boss@example.pl",
        "anna<boss@example.pl>",
        '"anna,boss"@example.pl',
    ],
)
def test_address_that_is_not_one_plain_mailbox_is_refused(email: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CanonicalResponse.model_validate(payload(email))

    [error] = refused.value.errors()
    assert error["loc"] == ("customer",)
    assert "not a valid e-mail address" in error["msg"]


def test_address_is_kept_in_its_normal_form_and_published_so() -> None:
    response = CanonicalResponse.model_validate(payload("Anna.Nowak@Klient.EXAMPLE.pl"))

    assert response.customer.email == "Anna.Nowak@klient.example.pl"
    event = response.to_event(received_at=datetime.now(UTC) + timedelta(hours=1), source="api")
    assert event.customer.email == "Anna.Nowak@klient.example.pl"


def test_customer_without_address_stays_without_one() -> None:
    assert CanonicalResponse.model_validate(payload(None)).customer.email is None
