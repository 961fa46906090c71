"""A customer's name is one line wherever it enters (a response or an invitation): line breaks
and control characters in it cannot add lines to the emails and pages that show it."""

from __future__ import annotations

import pytest

from closeloop_ingest.domain.responses import CanonicalResponse
from closeloop_ingest.service_layer.invitations import CanonicalInvitation


def customer(name: str) -> dict[str, str]:
    return {"id": "c-1", "email": "Anna@Example.com", "name": name}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Jan\r\nBcc: victim@evil.example", "Jan Bcc: victim@evil.example"),
        ("Jan\n\n\tKowalski", "Jan Kowalski"),
        ("Jan\u2028Kowalski\u0085", "Jan Kowalski"),
        ("Jan\x00\x1b[31mKowalski", "Jan [31mKowalski"),
        ("  Zoë Żółć-Gęślą  ", "  Zoë Żółć-Gęślą  "),  # no break: kept as given
    ],
)
def test_a_customer_name_is_stored_on_one_line(given: str, stored: str) -> None:
    response = CanonicalResponse.model_validate(
        {
            "response_id": "r-1",
            "survey_id": "s-1",
            "customer": customer(given),
            "score": 3,
            "answered_at": "2026-01-01T10:00:00Z",
        }
    )
    invitation = CanonicalInvitation.model_validate(
        {
            "invitation_id": "i-1",
            "survey_id": "s-1",
            "customer": customer(given),
            "channel": "email",
            "invited_at": "2026-01-01T09:00:00Z",
        }
    )

    assert response.customer.name == invitation.customer.name == stored
    assert response.customer.email == invitation.customer.email == "Anna@example.com"
