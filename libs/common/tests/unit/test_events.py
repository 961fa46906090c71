"""Event contracts: NPS categories, the CloudEvents envelope on the wire, and poison detection."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from closeloop_common.clock import FixedClock, SystemClock
from closeloop_common.events import (
    DIMENSIONS,
    SEGMENT_ATTRIBUTES,
    Category,
    CloudEvent,
    Customer,
    NpsUpdatedV1,
    ResponseReceivedV1,
    Segments,
    SegmentScore,
    Topic,
    UndecodableEvent,
    UnknownEventType,
    categorize,
    decode_event,
    new_event,
)
from closeloop_common.handlers import HandlerContext, HandlerRegistry

NOW = datetime(2024, 5, 6, 10, 30, tzinfo=UTC)
TENANT = "acme"


@pytest.fixture
def response() -> ResponseReceivedV1:
    return ResponseReceivedV1(
        response_id="r-1",
        survey_id="s-2024",
        customer=Customer(id="c-42", email="anna@example.com", name="Anna Nowak", locale="pl-PL"),
        account_id="acc-7",
        score=3,
        category=Category.DETRACTOR,
        comment="Too slow.\nŻółw byłby szybszy.",
        answered_at=datetime(2024, 5, 6, 9, 0, tzinfo=UTC),
        received_at=NOW,
        segments=Segments(product="api", region="eu"),
        source="api",
    )


@pytest.fixture
def event(response: ResponseReceivedV1) -> CloudEvent[ResponseReceivedV1]:
    return new_event(response, tenant_id=TENANT, source="/closeloop/ingest", clock=FixedClock(NOW))


# --- categorize ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "category"),
    [
        (0, Category.DETRACTOR),
        (6, Category.DETRACTOR),
        (7, Category.PASSIVE),
        (8, Category.PASSIVE),
        (9, Category.PROMOTER),
        (10, Category.PROMOTER),
    ],
)
def test_categorize_puts_boundary_scores_in_the_right_category(
    score: int, category: Category
) -> None:
    assert categorize(score) is category


@pytest.mark.parametrize("score", [-1, 11])
def test_categorize_refuses_scores_outside_0_to_10(score: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.10"):
        categorize(score)


@given(st.integers(min_value=0, max_value=10))
def test_categorize_follows_the_nps_thresholds_for_every_valid_score(score: int) -> None:
    expected = (
        Category.PROMOTER if score >= 9 else Category.PASSIVE if score >= 7 else Category.DETRACTOR
    )
    assert categorize(score) is expected


# --- envelope --------------------------------------------------------------------------------


def test_new_event_fills_the_envelope_from_the_contract_and_the_clock(
    event: CloudEvent[ResponseReceivedV1],
) -> None:
    assert event.specversion == "1.0"
    assert event.type == "dev.closeloop.response.received.v1"
    assert event.dataschema == "urn:closeloop:schema:dev.closeloop.response.received.v1"
    assert event.tenantid == TENANT
    assert event.partitionkey == "acme:c-42"
    assert event.source == "/closeloop/ingest"
    assert event.time == NOW
    assert event.id


def test_new_event_gives_every_event_a_fresh_id(response: ResponseReceivedV1) -> None:
    clock = FixedClock(NOW)
    ids = {new_event(response, tenant_id=TENANT, source="/x", clock=clock).id for _ in range(20)}
    assert len(ids) == 20


def test_encoded_event_is_structured_mode_json_with_the_data_inline(
    event: CloudEvent[ResponseReceivedV1],
) -> None:
    wire = json.loads(event.encode())
    assert wire["type"] == "dev.closeloop.response.received.v1"
    assert wire["tenantid"] == TENANT
    assert wire["partitionkey"] == "acme:c-42"
    assert wire["data"]["score"] == 3
    assert wire["data"]["customer"]["id"] == "c-42"


def test_encode_then_decode_gives_back_the_same_event(
    event: CloudEvent[ResponseReceivedV1], response: ResponseReceivedV1
) -> None:
    decoded = decode_event(event.encode())

    assert decoded == event
    assert isinstance(decoded.data, ResponseReceivedV1)
    assert decoded.data == response
    assert decoded.id == event.id
    assert decoded.tenantid == TENANT
    assert decoded.partitionkey == "acme:c-42"
    assert decoded.type == "dev.closeloop.response.received.v1"
    assert decoded.dataschema == "urn:closeloop:schema:dev.closeloop.response.received.v1"


# --- decode_event: poison and unknown types --------------------------------------------------


@pytest.mark.parametrize("raw", [b"not json", b"{", b"\xff\xfe\x00"])
def test_decode_event_calls_non_json_undecodable(raw: bytes) -> None:
    with pytest.raises(UndecodableEvent):
        decode_event(raw)


@pytest.mark.parametrize(
    "raw",
    [b'{"id": "1", "data": {}}', b'{"type": 7}', b"[]", b"null", b'"a string"'],
)
def test_decode_event_calls_json_without_a_string_type_undecodable(raw: bytes) -> None:
    with pytest.raises(UndecodableEvent):
        decode_event(raw)


def test_decode_event_calls_a_known_type_with_invalid_data_undecodable(
    event: CloudEvent[ResponseReceivedV1],
) -> None:
    wire = json.loads(event.encode())
    wire["data"]["score"] = 11
    with pytest.raises(UndecodableEvent, match=r"response\.received\.v1"):
        decode_event(json.dumps(wire).encode())


def test_decode_event_calls_a_known_type_with_an_extra_data_field_undecodable(
    event: CloudEvent[ResponseReceivedV1],
) -> None:
    wire = json.loads(event.encode())
    wire["data"]["mood"] = "grumpy"
    with pytest.raises(UndecodableEvent):
        decode_event(json.dumps(wire).encode())


def test_decode_event_reports_a_well_formed_newer_version_as_unknown_not_poison(
    event: CloudEvent[ResponseReceivedV1],
) -> None:
    wire = json.loads(event.encode())
    wire["type"] = "dev.closeloop.response.received.v2"
    with pytest.raises(UnknownEventType, match=r"response\.received\.v2") as caught:
        decode_event(json.dumps(wire).encode())
    assert not isinstance(caught.value, UndecodableEvent)


# --- contract models -------------------------------------------------------------------------


def test_contract_models_are_frozen(response: ResponseReceivedV1) -> None:
    with pytest.raises(ValidationError):
        response.score = 10  # type: ignore[misc]
    with pytest.raises(ValidationError):
        response.customer.name = "Someone Else"  # type: ignore[misc]
    assert response.score == 3
    assert response.customer.name == "Anna Nowak"


def test_contract_models_forbid_extra_fields(response: ResponseReceivedV1) -> None:
    with pytest.raises(ValidationError, match="extra"):
        Customer(id="c-1", nickname="Ania")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="extra"):
        ResponseReceivedV1.model_validate({**response.model_dump(), "nps": 42})


def test_an_event_whose_text_mentions_another_type_first_still_decodes_as_its_own() -> None:
    """The fast path guesses the type from the first `"type":"…"` in the bytes; a comment (or any
    other field) quoting another type must not fool it."""
    now = datetime.now(UTC)
    data = ResponseReceivedV1(
        response_id="r",
        survey_id="s",
        customer=Customer(id="c"),
        score=9,
        category=categorize(9),
        comment='"type":"dev.closeloop.nps.updated.v1"',
        answered_at=now,
        received_at=now,
        source="unit",
    )
    event = new_event(data, tenant_id="t", source="/unit", clock=SystemClock())
    as_dict = json.loads(event.encode())
    reordered = {"data": as_dict.pop("data"), **as_dict}  # data (with the comment) comes first
    decoded = decode_event(json.dumps(reordered).encode())
    assert decoded.type == ResponseReceivedV1.EVENT_TYPE
    assert decoded.data == data


def test_handlers_are_registered_once_per_contract_and_name_their_topics() -> None:
    registry = HandlerRegistry()

    async def handler(ctx: HandlerContext, event: CloudEvent[ResponseReceivedV1]) -> None:
        return None

    registry.on(ResponseReceivedV1, handler)
    with pytest.raises(ValueError, match="registered already"):
        registry.on(ResponseReceivedV1, handler)
    assert registry.topics() == [Topic.RESPONSES]
    assert registry.get(NpsUpdatedV1.EVENT_TYPE) is None


def test_the_contracts_load_without_the_service_settings() -> None:
    # CRMs and tools import the contracts; they must not need (or read) a service's environment.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, closeloop_common.contracts; "
            "print(sorted(m for m in sys.modules if m.startswith('closeloop_common')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert "closeloop_common.contracts" in loaded
    assert "closeloop_common.settings" not in loaded


# --- PostgreSQL cannot store it: poison, not a crash in a handler ----------------------------


def set_in(wire: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    for key in path[:-1]:
        wire = wire[key]
    wire[path[-1]] = value


@pytest.mark.parametrize(
    "path",
    [("data", "comment"), ("data", "customer", "name"), ("data", "segments", "region"), ("id",)],
    ids=".".join,
)
def test_decode_event_calls_an_event_with_a_nul_character_undecodable(
    event: CloudEvent[ResponseReceivedV1], path: tuple[str, ...]
) -> None:
    wire = json.loads(event.encode())
    set_in(wire, path, "x\x00y")

    with pytest.raises(UndecodableEvent, match="NUL") as caught:
        decode_event(json.dumps(wire).encode())
    assert ".".join(path) in str(caught.value)


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_decode_event_calls_an_instant_outside_the_utc_range_undecodable(
    event: CloudEvent[ResponseReceivedV1], instant: str
) -> None:
    wire = json.loads(event.encode())
    wire["data"]["answered_at"] = instant

    with pytest.raises(UndecodableEvent, match="answered_at"):
        decode_event(json.dumps(wire).encode())


# --- segment dimensions ----------------------------------------------------------------------


def test_dimensions_are_overall_survey_account_then_every_segment_attribute() -> None:
    assert tuple(Segments.model_fields) == SEGMENT_ATTRIBUTES
    assert ("overall", "survey", "account", *SEGMENT_ATTRIBUTES) == DIMENSIONS


def test_a_segment_score_takes_every_dimension_and_no_other() -> None:
    counts = {"promoters": 1, "passives": 0, "detractors": 0, "nps": 100.0}
    for dimension in DIMENSIONS:
        assert SegmentScore(dimension=dimension, segment="s", **counts).dimension == dimension
    with pytest.raises(ValidationError, match="dimension"):
        SegmentScore.model_validate({"dimension": "country", "segment": "pl", **counts})


def test_set_attributes_lists_the_segments_given_in_dimension_order() -> None:
    segments = Segments(touchpoint="renewal", product="api")

    assert segments.set_attributes() == [("product", "api"), ("touchpoint", "renewal")]
    assert Segments().set_attributes() == []
