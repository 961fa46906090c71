"""Custom attributes in ingest: the canonical response and invitation take them, sources map them
by JSONPath (a form's own over the source's, name by name), and what was stored and
fingerprinted before attributes existed stays exactly as it was."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from closeloop_common.events import Customer, Segments
from closeloop_ingest.domain.responses import CanonicalResponse, fingerprint_of
from closeloop_ingest.domain.sources import custom, typeform
from closeloop_ingest.domain.sources.base import FieldRefs, InvalidPayload, SourceDefinition
from closeloop_ingest.domain.sources.respondent import NO_DEFAULTS, find_respondent
from closeloop_ingest.service_layer.invitations import CanonicalInvitation

from .signing import SECRET, delivery, fixture, hmac_base64, only_response, source

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
CUSTOMER = Customer(id="c-42", email="anna@example.pl")
# Fingerprints of the same response and invitation computed by the build before attributes:
# stored fingerprints must keep matching resends, or every resend would be a conflict.
RESPONSE_FINGERPRINT = "a382c9b9c6650b8016ec92fe8195d6f9fbc65ec9edf02b0208748eec9db4a93b"
INVITATION_FINGERPRINT = "384152cc0b929e2d4e02d954e6eb99bb6bf323371251e7732e71d794e2c04de2"


def a_response(**changes: Any) -> CanonicalResponse:
    fields: dict[str, Any] = {
        "response_id": "r-1",
        "survey_id": "s",
        "customer": CUSTOMER,
        "account_id": "acme",
        "score": 3,
        "comment": "Faktura",
        "answered_at": AT,
        "segments": Segments(region="PL"),
    }
    return CanonicalResponse(**(fields | changes))


def an_invitation(**changes: Any) -> CanonicalInvitation:
    fields: dict[str, Any] = {
        "invitation_id": "i-1",
        "survey_id": "s",
        "customer": CUSTOMER,
        "channel": "email",
        "invited_at": AT,
        "segments": Segments(region="PL"),
    }
    return CanonicalInvitation(**(fields | changes))


# --- the canonical response and invitation ----------------------------------------------------


def test_without_attributes_fingerprints_and_stored_payloads_are_as_before() -> None:
    response = a_response()
    stored = response.model_dump(mode="json", exclude_none=True)

    assert response.fingerprint() == RESPONSE_FINGERPRINT
    assert "attributes" not in stored
    assert fingerprint_of(stored) == RESPONSE_FINGERPRINT
    assert an_invitation().fingerprint() == INVITATION_FINGERPRINT
    assert "attributes" not in json.loads(an_invitation().model_dump_json())


def test_attributes_are_content_of_the_response_and_the_invitation() -> None:
    gold = a_response(attributes={"plan": "gold"})
    silver = a_response(attributes={"plan": "silver"})
    stored = gold.model_dump(mode="json", exclude_none=True)

    assert stored["attributes"] == {"plan": "gold"}
    assert fingerprint_of(stored) == gold.fingerprint()
    assert len({a_response().fingerprint(), gold.fingerprint(), silver.fingerprint()}) == 3
    assert an_invitation(attributes={"plan": "gold"}).fingerprint() != an_invitation().fingerprint()


def test_the_event_of_a_response_carries_its_attributes() -> None:
    event = a_response(attributes={"plan": "gold", "tier": "smb"}).to_event(
        received_at=AT, source="api"
    )

    assert event.attributes == {"plan": "gold", "tier": "smb"}


@pytest.mark.parametrize(
    "attributes", [{"Plan": "gold"}, {"plan": ""}, {"plan": "g" * 101}, {"plan": "a\x00"}]
)
def test_an_attribute_the_contract_refuses_is_refused_at_the_door(
    attributes: dict[str, str],
) -> None:
    with pytest.raises(ValidationError):
        a_response(attributes=attributes)
    with pytest.raises(ValidationError):
        an_invitation(attributes=attributes)


def test_attribute_values_are_stripped_like_every_other_text() -> None:
    assert a_response(attributes={"plan": "  gold "}).attributes == {"plan": "gold"}


# --- sources ----------------------------------------------------------------------------------


def test_attributes_are_read_where_the_refs_point_and_only_there() -> None:
    document = {"hidden": {"plan": "gold", "seats": 50, "tier": "", "extra": "x"}}
    refs = FieldRefs(
        attributes={"plan": "$.hidden.plan", "seats": "$.hidden.seats", "tier": "$.hidden.tier"}
    )

    found = find_respondent(document, refs, NO_DEFAULTS, default_locale=None)

    assert found.attributes == {"plan": "gold", "seats": "50"}  # blank and unmapped left out


def test_a_form_s_attributes_add_to_the_source_s_and_replace_them_by_name() -> None:
    defined = source(
        "typeform",
        SECRET,
        fields={"attributes": {"plan": "$.a.plan", "tier": "$.a.tier"}},
        forms={"f1": {"attributes": {"tier": "$.b.tier", "seats": "$.b.seats"}}},
    )

    assert defined.refs_for("f1").attributes == {
        "plan": "$.a.plan",
        "tier": "$.b.tier",
        "seats": "$.b.seats",
    }
    assert defined.refs_for("other").attributes == {"plan": "$.a.plan", "tier": "$.a.tier"}


@pytest.mark.parametrize(
    "attributes",
    [{"Plan": "$.a"}, {"plan": "$[?"}, {"plan": ""}, {f"a{i}": "$.a" for i in range(21)}],
    ids=["name", "path", "empty-path", "too-many"],
)
def test_a_source_with_an_unusable_attribute_mapping_is_refused(
    attributes: dict[str, str],
) -> None:
    with pytest.raises(ValidationError):
        source("typeform", SECRET, fields={"attributes": attributes})


def test_a_typeform_hidden_field_becomes_an_attribute() -> None:
    payload = json.loads(fixture("typeform", "promoter"))
    payload["form_response"]["hidden"]["plan"] = "gold"
    body = json.dumps(payload).encode()
    mapped = source(
        "typeform", SECRET, fields={"attributes": {"plan": "$.form_response.hidden.plan"}}
    )
    headers = {"Typeform-Signature": f"sha256={hmac_base64(SECRET, body)}"}

    response = only_response(typeform.ADAPTER.parse(delivery(body, headers), mapped))
    unmapped = only_response(
        typeform.ADAPTER.parse(delivery(body, headers), source("typeform", SECRET))
    )

    assert response.attributes == {"plan": "gold"}
    assert unmapped.attributes == {}


def test_a_custom_source_names_the_path_of_an_attribute_it_cannot_accept() -> None:
    definition = SourceDefinition.model_validate(
        {
            "tenant_id": "acme",
            "name": "inhouse",
            "kind": "custom",
            "secrets": ["s3cret"],
            "fields": {"attributes": {"plan": "$.meta.plan"}},
            "custom": {
                "fields": {"response_id": "$.id", "score": "$.score"},
                "auth": {"type": "token", "header": "X-Token"},
            },
        }
    )
    good = json.dumps({"id": "1", "score": 9, "meta": {"plan": "gold"}}).encode()
    bad = json.dumps({"id": "2", "score": 9, "meta": {"plan": "g" * 101}}).encode()

    response = only_response(custom.ADAPTER.parse(delivery(good, {}), definition))
    with pytest.raises(InvalidPayload) as refused:
        custom.ADAPTER.parse(delivery(bad, {}), definition)

    assert response.attributes == {"plan": "gold"}
    assert refused.value.field == "$.meta.plan"
