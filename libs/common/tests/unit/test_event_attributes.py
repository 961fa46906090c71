"""Custom attributes on responses and invitations: an additive, optional field. Events without
attributes are byte for byte what the build before the field wrote; events with them round-trip;
names and values are bounded, and the JSON Schema says exactly what the models accept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from closeloop_common.contracts import json_schema
from closeloop_common.events import (
    Category,
    CloudEvent,
    Customer,
    EventData,
    InvitationSentV1,
    ResponseCorrectedV1,
    ResponseReceivedV1,
    ResponseSuspectedV1,
    ResponseVersion,
    Segments,
    decode_event,
    schema_urn,
)

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
CUSTOMER = Customer(id="c-42", email="anna@example.pl")

# Written by the build before `attributes` existed (same data, id and time): consumers built
# then read today's events without attributes unchanged.
RECEIVED_BEFORE_ATTRIBUTES = (
    b'{"specversion":"1.0","id":"e-1","source":"/closeloop/ingest",'
    b'"type":"dev.closeloop.response.received.v1","subject":null,"time":"2026-11-23T09:30:00Z",'
    b'"datacontenttype":"application/json",'
    b'"dataschema":"urn:closeloop:schema:dev.closeloop.response.received.v1","tenantid":"acme",'
    b'"partitionkey":"acme:c-42","data":{"response_id":"r-1","survey_id":"s","customer":'
    b'{"id":"c-42","email":"anna@example.pl","name":null,"locale":null},"account_id":"acme",'
    b'"score":3,"category":"detractor","comment":"Faktura","answered_at":"2026-11-23T09:30:00Z",'
    b'"received_at":"2026-11-23T09:30:00Z","segments":{"product":null,"region":"PL",'
    b'"channel":null,"touchpoint":null},"source":"api"}}'
)
CORRECTED_BEFORE_ATTRIBUTES = (
    b'{"specversion":"1.0","id":"e-1","source":"/closeloop/ingest",'
    b'"type":"dev.closeloop.response.corrected.v1","subject":null,"time":"2026-11-23T09:30:00Z",'
    b'"datacontenttype":"application/json",'
    b'"dataschema":"urn:closeloop:schema:dev.closeloop.response.corrected.v1","tenantid":"acme",'
    b'"partitionkey":"acme:c-42","data":{"response_id":"r-1","version":2,"survey_id":"s",'
    b'"customer":{"id":"c-42","email":"anna@example.pl","name":null,"locale":null},'
    b'"account_id":null,"score":9,"category":"promoter","comment":null,'
    b'"answered_at":"2026-11-23T09:30:00Z","updated_at":"2026-11-23T09:30:00Z",'
    b'"received_at":"2026-11-23T09:30:00Z","segments":{"product":null,"region":"PL",'
    b'"channel":null,"touchpoint":null},"source":"api","previous":{"version":1,"survey_id":"s",'
    b'"account_id":null,"score":3,"category":"detractor","answered_at":"2026-11-23T09:30:00Z",'
    b'"segments":{"product":null,"region":"PL","channel":null,"touchpoint":null}}}}'
)


def envelope(data: EventData) -> CloudEvent[Any]:
    event: CloudEvent[Any] = CloudEvent[type(data)](  # type: ignore[misc,operator]
        id="e-1",
        source="/closeloop/ingest",
        type=data.EVENT_TYPE,
        time=AT,
        dataschema=schema_urn(data.EVENT_TYPE),
        tenantid="acme",
        partitionkey="acme:c-42",
        data=data,
    )
    return event


def received(**changes: Any) -> ResponseReceivedV1:
    fields: dict[str, Any] = {
        "response_id": "r-1",
        "survey_id": "s",
        "customer": CUSTOMER,
        "account_id": "acme",
        "score": 3,
        "category": Category.DETRACTOR,
        "comment": "Faktura",
        "answered_at": AT,
        "received_at": AT,
        "segments": Segments(region="PL"),
        "source": "api",
    }
    return ResponseReceivedV1(**(fields | changes))


def corrected(attributes: dict[str, str], previous: dict[str, str]) -> ResponseCorrectedV1:
    return ResponseCorrectedV1(
        response_id="r-1",
        version=2,
        survey_id="s",
        customer=CUSTOMER,
        score=9,
        category=Category.PROMOTER,
        answered_at=AT,
        updated_at=AT,
        received_at=AT,
        segments=Segments(region="PL"),
        attributes=attributes,
        source="api",
        previous=ResponseVersion(
            version=1,
            survey_id="s",
            score=3,
            category=Category.DETRACTOR,
            answered_at=AT,
            segments=Segments(region="PL"),
            attributes=previous,
        ),
    )


def every_contract_with(attributes: dict[str, str]) -> list[EventData]:
    return [
        received(attributes=attributes),
        corrected(attributes, attributes),
        ResponseSuspectedV1(
            response_id="r-1",
            version=1,
            survey_id="s",
            customer=CUSTOMER,
            score=10,
            category=Category.PROMOTER,
            answered_at=AT,
            received_at=AT,
            attributes=attributes,
            source="api",
            reasons=("link_scanner_user_agent",),
        ),
        InvitationSentV1(
            invitation_id="i-1",
            survey_id="s",
            customer=CUSTOMER,
            channel="email",
            invited_at=AT,
            attributes=attributes,
        ),
    ]


def test_an_event_without_attributes_is_byte_for_byte_what_the_earlier_build_wrote() -> None:
    assert envelope(received()).encode() == RECEIVED_BEFORE_ATTRIBUTES
    assert envelope(corrected({}, {})).encode() == CORRECTED_BEFORE_ATTRIBUTES


@pytest.mark.parametrize("data", every_contract_with({}), ids=lambda d: d.EVENT_TYPE)
def test_an_empty_attributes_map_is_left_out_of_every_contract_on_the_wire(
    data: EventData,
) -> None:
    encoded = envelope(data).encode()

    assert b"attributes" not in encoded
    assert decode_event(encoded).data == data


@pytest.mark.parametrize(
    "data", every_contract_with({"plan": "gold", "tier": "smb"}), ids=lambda d: d.EVENT_TYPE
)
def test_attributes_travel_with_every_response_and_invitation_contract(data: EventData) -> None:
    encoded = envelope(data).encode()
    document = json.loads(encoded)

    assert document["data"]["attributes"] == {"plan": "gold", "tier": "smb"}
    assert decode_event(encoded).data == data
    jsonschema.validate(document, json_schema(type(data)))


def test_a_correction_carries_the_attributes_of_the_version_it_replaces() -> None:
    document = json.loads(envelope(corrected({"plan": "gold"}, {"plan": "silver"})).encode())

    assert document["data"]["attributes"] == {"plan": "gold"}
    assert document["data"]["previous"]["attributes"] == {"plan": "silver"}


@pytest.mark.parametrize(
    "attributes",
    [
        {"Plan": "gold"},  # names are lower case
        {"1plan": "gold"},
        {"plan-type": "gold"},
        {"p" * 41: "gold"},
        {"plan": ""},
        {"plan": "g" * 101},
        {"plan": "go\x00ld"},
        {f"a{i}": "x" for i in range(21)},
    ],
    ids=[
        "upper-case",
        "leading-digit",
        "dash",
        "name-too-long",
        "empty-value",
        "value-too-long",
        "nul",
        "21-attributes",
    ],
)
def test_attribute_names_and_values_are_bounded_in_the_models_and_the_schema(
    attributes: dict[str, str],
) -> None:
    with pytest.raises(ValidationError):
        received(attributes=attributes)
    document = json.loads(envelope(received()).encode())
    document["data"]["attributes"] = attributes
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json_schema(ResponseReceivedV1))


def test_the_longest_and_most_attributes_allowed_are_accepted() -> None:
    attributes = {f"a{i}": "v" * 100 for i in range(19)} | {"z" + "9" * 39: "x"}

    assert received(attributes=attributes).attributes == attributes


@pytest.mark.parametrize(
    "contract", [ResponseReceivedV1, ResponseCorrectedV1, ResponseSuspectedV1, InvitationSentV1]
)
def test_the_schema_marks_attributes_optional(contract: type[EventData]) -> None:
    schema = json_schema(contract)
    data = schema["$defs"][contract.__name__]

    assert "attributes" in data["properties"]
    assert "attributes" not in data.get("required", [])
