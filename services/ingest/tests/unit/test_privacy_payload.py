"""What ingest keeps of an erased respondent's stored request (pure)."""

from __future__ import annotations

from closeloop_common.privacy import SubjectIdentifiers
from closeloop_ingest.service_layer.privacy import anonymised_payload, too_many


def test_an_anonymised_request_keeps_what_counts_and_nothing_that_names_the_person() -> None:
    stored = {
        "response_id": "r-1",
        "survey_id": "s",
        "customer": {"id": "c-1", "email": "anna@klient.pl", "name": "Anna", "locale": "pl"},
        "score": 3,
        "comment": "Anna here: the courier was rude.",
        "answered_at": "2026-11-10T09:00:00Z",
        "segments": {"region": "mazowieckie"},
        "user_agent": "Mozilla/5.0",
    }
    assert anonymised_payload(stored, "erased:x") == {
        "response_id": "r-1",
        "survey_id": "s",
        "customer": {"id": "erased:x"},
        "score": 3,
        "comment": "[erased]",
        "answered_at": "2026-11-10T09:00:00Z",
        "segments": {"region": "mazowieckie"},
    }
    assert "comment" not in anonymised_payload({"customer": {"id": "c"}}, "erased:x")


def test_an_erasure_names_at_most_ten_thousand_records_of_a_kind() -> None:
    at_most = SubjectIdentifiers(response_ids=tuple(f"r-{i}" for i in range(10_000)))
    beyond = SubjectIdentifiers.model_construct(
        customer_ids=(), emails=(), response_ids=(*at_most.response_ids, "r-x"), invitation_ids=()
    )
    assert too_many(at_most) is False
    assert too_many(beyond) is True
