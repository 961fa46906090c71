"""What CRMs see: every contract's event, read back with kcat (librdkafka, not our Python client),
carries its key and content type and validates against the JSON Schema published in contracts/."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from closeloop_common.clock import SystemClock
from closeloop_common.contracts import schema_filename
from closeloop_common.events import (
    CONTRACTS,
    CaseOpenedV1,
    CaseResurveyDueV1,
    CaseSlaAlertV1,
    CaseUpdatedV1,
    Category,
    ChangeAudience,
    ChangeSegment,
    ChangeSummaryV1,
    ChangeText,
    CloudEvent,
    ContactAttempt,
    Customer,
    ErasureCompletedV1,
    ErasureRequestedV1,
    EventData,
    HeadlineWindow,
    InvitationSentV1,
    NoResponseCaseOpenedV1,
    NoResponseCaseUpdatedV1,
    NotificationFailedV1,
    NotificationFailedV2,
    NotificationSentV1,
    NotificationSentV2,
    NpsChangedV1,
    NpsUpdatedV1,
    Owner,
    Playbook,
    ResponseCorrectedV1,
    ResponseReceivedV1,
    ResponseSuspectedV1,
    ResponseVersion,
    Segments,
    SegmentScore,
    new_event,
)
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.settings import CommonSettings

SCHEMAS = Path(__file__).resolve().parents[4] / "contracts" / "schemas"


def one_of_each(run: str) -> list[EventData]:
    now = datetime.now(UTC)
    customer = Customer(id=f"kcat-{run}", email="ola@example.pl", name="Ola Wrona", locale="pl-PL")
    case_id, message_id, erasure_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    return [
        ResponseReceivedV1(
            response_id=f"r-{run}",
            survey_id="s",
            customer=customer,
            account_id="a",
            score=4,
            category=Category.DETRACTOR,
            comment="Zła obsługa",
            answered_at=now,
            received_at=now,
            segments=Segments(region="PL"),
            source="api",
        ),
        ResponseCorrectedV1(
            response_id=f"r-{run}",
            version=2,
            survey_id="s",
            customer=customer,
            account_id="a",
            score=8,
            category=Category.PASSIVE,
            comment="Już lepiej",
            answered_at=now,
            updated_at=now,
            received_at=now,
            segments=Segments(region="PL"),
            source="delighted",
            previous=ResponseVersion(
                version=1,
                survey_id="s",
                account_id="a",
                score=4,
                category=Category.DETRACTOR,
                answered_at=now,
                segments=Segments(region="PL"),
            ),
        ),
        ResponseSuspectedV1(
            response_id=f"r2-{run}",
            version=1,
            survey_id="s",
            customer=customer,
            score=10,
            category=Category.PROMOTER,
            answered_at=now,
            received_at=now,
            source="typeform",
            reasons=("answered_right_after_invitation",),
        ),
        InvitationSentV1(
            invitation_id=f"i-{run}",
            survey_id="s",
            customer=customer,
            account_id="a",
            channel="email",
            invited_at=now,
        ),
        NpsUpdatedV1(
            response_id=f"r-{run}",
            customer_id=customer.id,
            category=Category.DETRACTOR,
            answered_at=now,
            scores=(
                SegmentScore(
                    dimension="overall",
                    segment="all",
                    promoters=0,
                    passives=0,
                    detractors=1,
                    nps=-100.0,
                ),
            ),
        ),
        NpsChangedV1(
            headline=f"kcat-{run}",  # the record key, like the customer id of the others
            filters={"region": "PL", "product": "billing"},
            window=HeadlineWindow.model_validate(
                {"name": "30d", "from": now.date(), "to": now.date(), "time_zone": "UTC"}
            ),
            n=4,
            promoters=3,
            passives=0,
            detractors=1,
            nps=50.0,
            ci_low=-3.5,
            ci_high=81.25,
            confidence=0.95,
            method="adjusted-wald",
            insufficient=True,
            previous_nps=40.0,
            change=10.0,
            computed_at=now,
        ),
        CaseOpenedV1(
            case_id=case_id,
            response_id=f"r-{run}",
            survey_id="s",
            customer=customer,
            account_id="a",
            score=4,
            category=Category.DETRACTOR,
            comment="Zła obsługa",
            playbook=Playbook.APOLOGY_CALLBACK,
            owner=Owner(id="o", name="Owner", email="o@example.com"),
            key_account=False,
            opened_at=now,
            first_contact_due_at=now,
        ),
        CaseUpdatedV1(
            case_id=case_id,
            response_id=f"r-{run}",
            customer=customer,
            account_id="a",
            transition="resolved",
            status_before="contacted",
            status="resolved",
            version=4,
            actor="o",
            at=now,
            note="Zwrot kosztów dostawy, klient zadowolony",
            outcome="compensated",
            case_type=Category.DETRACTOR,
            playbook=Playbook.APOLOGY_CALLBACK,
            priority="high",
            channel="phone",
            team_id="support",
            queue=None,
            owner=Owner(id="o", name="Owner", email="o@example.com"),
            root_causes=("kurier",),
            first_contact_due_at=now,
            resolution_due_at=now,
            first_contacted_at=now,
            resolved_at=now,
            closed_at=None,
        ),
        NoResponseCaseOpenedV1(
            case_id=case_id,
            response_id="no-response:inv-1",
            invitation_id="inv-1",
            survey_id="s",
            customer=customer,
            account_id="a",
            invited_at=now,
            silent_days=14,
            owner=Owner(id="o", name="Owner", email="o@example.com"),
            key_account=True,
            priority="high",
            channel="phone",
            opened_at=now,
            first_contact_due_at=now,
            team_id="support",
            queue=None,
        ),
        NoResponseCaseUpdatedV1(
            case_id=case_id,
            response_id="no-response:inv-1",
            invitation_id="inv-1",
            customer=customer,
            account_id="a",
            transition="contact_logged",
            status_before="in_progress",
            status="contacted",
            version=3,
            actor="o",
            at=now,
            note="Busy quarter; will answer next time",
            contact=ContactAttempt(channel="phone", outcome="reached"),
            case_type="no_response",
            playbook="account_outreach",
            priority="high",
            channel="phone",
            team_id="support",
            queue=None,
            owner=Owner(id="o", name="Owner", email="o@example.com"),
            first_contact_due_at=now,
            resolution_due_at=None,
            first_contacted_at=now,
            resolved_at=None,
            closed_at=None,
        ),
        CaseSlaAlertV1(
            case_id=case_id,
            response_id=f"r-{run}",
            customer=customer,
            account_id="a",
            clock="first_contact",
            kind="breach",
            step=0,
            to="owner",
            recipient=Owner(id="o", name="Owner", email="o@example.com"),
            owner=Owner(id="o", name="Owner", email="o@example.com"),
            priority="high",
            due_at=now,
            deadline=now,
            fired_at=now,
        ),
        CaseResurveyDueV1(
            case_id=case_id,
            response_id=f"r-{run}",
            survey_id="s",
            customer=customer,
            account_id="a",
            closed_at=now,
            due_at=now,
        ),
        NotificationSentV1(
            message_id=message_id,
            case_id=case_id,
            response_id=f"r-{run}",
            customer_id=customer.id,
            template="apology",
            locale="pl",
            channel="email",
            recipient="ola@example.pl",
            subject="Przepraszamy",
            attempts=1,
            sent_at=now,
        ),
        NotificationFailedV1(
            message_id=uuid.uuid4(),
            case_id=case_id,
            response_id=f"r-{run}",
            customer_id=customer.id,
            template="thanks",
            channel="email",
            reason="opted_out",
            attempts=0,
            failed_at=now,
        ),
        NotificationSentV2(
            message_id=message_id,
            kind="sla_breach",
            audience="team",
            channel="webhook",
            case_id=case_id,
            campaign_id=None,
            response_id=f"r-{run}",
            customer_id=customer.id,
            locale="pl",
            recipient="chat.example.com",
            subject="Przekroczony termin",
            attempts=1,
            sent_at=now,
        ),
        NotificationFailedV2(
            message_id=uuid.uuid4(),
            kind="change_summary",
            audience="customer",
            channel="email",
            case_id=None,
            campaign_id=uuid.uuid4(),
            response_id=None,
            customer_id=customer.id,
            locale="en",
            reason="frequency_capped",
            detail="3 messages in the last 7 days",
            attempts=0,
            failed_at=now,
        ),
        ChangeSummaryV1(  # keyed by the change, not by a customer
            change_id=f"kcat-{run}",
            status="rejected",
            locale="pl",
            text=ChangeText(
                title="Dostawa w sobotę",
                reason="Przewoźnik nie obsługuje sobót w Państwa regionie.",
                you_said="Chcę odbierać paczki w sobotę.",
            ),
            translations={
                "en": ChangeText(
                    title="Saturday delivery",
                    reason="Our carrier does not deliver on Saturdays in your region.",
                )
            },
            audience=ChangeAudience(
                response_ids=(f"r-{run}",),
                segment=ChangeSegment(region="north", invited_since=now),
            ),
            decided_by="product-owner",
            decided_at=now,
        ),
        ErasureRequestedV1(  # keyed by the erasure
            erasure_id=erasure_id,
            customer_ids=(f"c-{run}",),
            emails=(f"anna.{run}@klient.example.pl",),
            response_ids=(f"r-{run}",),
            invitation_ids=(),
            pseudonym=f"erased:{erasure_id}",
            requested_at=now,
        ),
        ErasureCompletedV1(
            erasure_id=erasure_id, service="notifier", rows={f"t{run}": 1}, completed_at=now
        ),
    ]


def kcat_read(bootstrap: str, topic: str, marker: str) -> list[dict[str, Any]]:
    """All records of `topic` whose value mentions `marker`, as kcat's JSON envelope."""
    result = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    records = [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]
    return [r for r in records if marker in (r.get("payload") or "")]


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by `make test-tools`")
async def test_every_contract_read_by_kcat_validates_against_its_published_schema(
    infra: dict[str, str],
) -> None:
    settings = CommonSettings()
    run = uuid.uuid4().hex[:8]
    events = [
        new_event(data, tenant_id="kcat-tenant", source="/test", clock=SystemClock())
        for data in one_of_each(run)
    ]
    assert {type(e.data) for e in events} == set(CONTRACTS)
    producer = EventProducer(settings.kafka_bootstrap_servers, client_id="kcat-test")
    await producer.start()
    try:
        await producer.send_batch(
            [
                OutboundRecord(
                    e.data.TOPIC.address(settings.kafka_topic_prefix), e.partitionkey, e.encode()
                )
                for e in events
            ]
        )
    finally:
        await producer.stop()

    for event in events:
        topic = event.data.TOPIC.address(settings.kafka_topic_prefix)
        found = [
            r
            for r in kcat_read(settings.kafka_bootstrap_servers, topic, run)
            if event.id in r["payload"]
        ]
        assert len(found) == 1, f"{event.type}: {len(found)} records"
        record = found[0]
        assert record["key"] == f"kcat-tenant:{event.data.customer_key()}"
        headers = dict(zip(record["headers"][::2], record["headers"][1::2], strict=True))
        assert headers["content-type"].startswith("application/cloudevents+json")
        payload = json.loads(record["payload"])
        schema = json.loads(
            (SCHEMAS / schema_filename(type(event.data))).read_text(encoding="utf-8")
        )
        Draft202012Validator(schema).validate(payload)
        assert payload["type"] == event.type
        assert payload["tenantid"] == "kcat-tenant"
        assert CloudEvent[type(event.data)].model_validate(payload) == event  # type: ignore[misc]


def test_published_schema_refuses_an_event_of_another_type() -> None:
    schema = json.loads((SCHEMAS / schema_filename(CaseOpenedV1)).read_text(encoding="utf-8"))
    response = one_of_each("x")[0]
    event = new_event(response, tenant_id="t", source="/test", clock=SystemClock())
    errors = list(Draft202012Validator(schema).iter_errors(json.loads(event.encode())))
    assert errors, "a response.received event must not validate as case.opened"
