"""The events `make bench-notifier` feeds the notifier, as the other services would publish them.

- `case_events`: `case.opened.v1` for realistic answers (`scoring_responses.ResponseFeed`: the
  mix of promoters, passives and detractors, Polish and English customers, comments in their
  language) of the four tenants of `orchestrator_tenants`, each case owned by a member of its
  tenant's care team, with the playbook of its category, as the orchestrator opens them.
- `Audience`: one tenant's campaign audience as ingest publishes it: `invitation.sent.v1` for
  `invitations` customers (in `survey_id`) and `response.received.v1` for `respondents` more
  answers, a fifth of them by customers who were never invited (they answered a link on the
  web site), so a campaign to the respondents and everyone invited reaches
  `invitations + respondents / 5` distinct addresses: the respondents who were invited are
  listed twice and must get one email.
- `change_summary`: the "you said, we did" event of that audience (Polish, with an English
  translation).
`produce` writes events to their topics in order, one chunk in flight at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from closeloop_common.clock import FixedClock, SystemClock
from closeloop_common.events import (
    CaseOpenedV1,
    Category,
    ChangeAudience,
    ChangeSegment,
    ChangeSummaryV1,
    ChangeText,
    CloudEvent,
    Customer,
    InvitationSentV1,
    Owner,
    Playbook,
    ResponseReceivedV1,
    Segments,
    new_event,
)
from closeloop_common.kafka.producer import EventProducer, OutboundRecord
from closeloop_common.settings import CommonSettings
from closeloop_devtools.orchestrator_tenants import CARE_PEOPLE, TENANTS
from closeloop_devtools.scoring_comments import comment_about
from closeloop_devtools.scoring_responses import ResponseFeed

ORCHESTRATOR = "/closeloop/loop-orchestrator"
INGEST = "/closeloop/ingest"
CAMPAIGN_TENANT = TENANTS[0]
CAMPAIGN_SURVEY = "relationship-2026"
CHUNK = 10_000
PLAYBOOKS = {
    Category.DETRACTOR: Playbook.APOLOGY_CALLBACK,
    Category.PASSIVE: Playbook.IMPROVEMENT_ASK,
    Category.PROMOTER: Playbook.THANKS_REFERRAL,
}
FIRST_CONTACT_HOURS = {Category.DETRACTOR: 8, Category.PASSIVE: 48, Category.PROMOTER: 48}


def owner(tenant: str, rng: random.Random) -> Owner:
    member_id, name, _ = rng.choice(CARE_PEOPLE)
    return Owner(id=member_id, name=name, email=f"{member_id}@{tenant}.example.com")


@dataclass(slots=True)
class CaseMix:
    """What `case_events` produced: cases by category, locale and comment."""

    categories: Counter[str] = field(default_factory=Counter)
    polish: int = 0
    comments: int = 0


def case_events(
    cases: int, *, seed: int, mix: CaseMix, clock: SystemClock | FixedClock | None = None
) -> Iterator[CloudEvent[CaseOpenedV1]]:
    """`cases` case.opened.v1 events, one per distinct answer (see the module docstring); the
    event time is the clock's (now, by default) when each is made."""
    clock = clock or SystemClock()
    feed = ResponseFeed(
        responses=cases, accounts=2_000, customers=max(cases, 2_000), seed=seed, tenants=TENANTS
    )
    rng = random.Random(seed + 1)
    key_accounts = {a.id for a in feed.accounts[: 5 * len(TENANTS)]}
    for answer, tenant in feed.answers():
        now = clock.now()
        category = answer.category
        mix.categories[category.value] += 1
        mix.polish += (answer.customer.locale or "").startswith("pl")
        mix.comments += answer.comment is not None
        case = CaseOpenedV1(
            case_id=uuid.uuid4(),
            response_id=answer.response_id,
            survey_id=answer.survey_id,
            customer=answer.customer,
            account_id=answer.account_id,
            score=answer.score,
            category=category,
            comment=answer.comment,
            playbook=PLAYBOOKS[category],
            owner=owner(tenant, rng),
            key_account=answer.account_id in key_accounts,
            opened_at=now,
            first_contact_due_at=now + timedelta(hours=FIRST_CONTACT_HOURS[category]),
            priority="high" if answer.score <= 3 else "normal",
            channel="phone" if category is Category.DETRACTOR else "email",
        )
        yield new_event(case, tenant_id=tenant, source=ORCHESTRATOR, clock=clock)


class Audience:
    """A campaign audience of `CAMPAIGN_TENANT` (see the module docstring)."""

    def __init__(self, *, invitations: int, respondents: int, seed: int) -> None:
        self.uninvited = respondents // 5
        self.feed = ResponseFeed(
            responses=0,
            accounts=1_000,
            customers=invitations + self.uninvited,
            seed=seed,
            tenants=(CAMPAIGN_TENANT,),
        )
        self.invitations = invitations
        self.respondents = respondents
        rng = random.Random(seed + 2)
        invited = rng.sample(range(invitations), respondents - self.uninvited)
        others = range(invitations, invitations + self.uninvited)
        self.answering = [*invited, *others]
        rng.shuffle(self.answering)
        self.response_ids = [f"resp-{n + 1:07d}" for n in range(respondents)]
        self._rng = rng

    @property
    def recipients(self) -> int:
        """Distinct addresses a campaign to the respondents and everyone invited reaches."""
        return self.invitations + self.uninvited

    def events(self) -> Iterator[CloudEvent[Any]]:
        """The invitations, then the answers (a month later), in that order."""
        clock = FixedClock(datetime.now(UTC) - timedelta(days=40))
        people = self.feed.people
        accounts = self.feed.accounts
        for n, person in enumerate(people[: self.invitations]):
            clock.advance(timedelta(seconds=1))
            invitation = InvitationSentV1(
                invitation_id=f"inv-{n + 1:07d}",
                survey_id=CAMPAIGN_SURVEY,
                customer=_customer(person),
                account_id=accounts[person.account].id,
                channel="email",
                invited_at=clock.now(),
                segments=Segments(region=person.region),
            )
            yield new_event(invitation, tenant_id=CAMPAIGN_TENANT, source=INGEST, clock=clock)
        clock.advance(timedelta(days=30))
        for response_id, index in zip(self.response_ids, self.answering, strict=True):
            person = people[index]
            clock.advance(timedelta(seconds=1))
            score = self._rng.choice((2, 4, 5, 6, 6, 7, 8))
            category = Category.DETRACTOR if score <= 6 else Category.PASSIVE
            answer = ResponseReceivedV1(
                response_id=response_id,
                survey_id=CAMPAIGN_SURVEY,
                customer=_customer(person),
                account_id=accounts[person.account].id,
                score=score,
                category=category,
                comment=comment_about(
                    self._rng, locale=person.locale, category=category.value, touchpoint="invoice"
                ),
                answered_at=clock.now() - timedelta(minutes=2),
                received_at=clock.now(),
                segments=Segments(region=person.region, touchpoint="invoice"),
                source="typeform",
            )
            yield new_event(answer, tenant_id=CAMPAIGN_TENANT, source=INGEST, clock=clock)

    def change_summary(self) -> CloudEvent[ChangeSummaryV1]:
        change = ChangeSummaryV1(
            change_id="issue-invoice-errors",
            status="done",
            locale="pl",
            text=ChangeText(
                title="Błędy na fakturach",
                summary="Od 1 grudnia każda faktura jest sprawdzana automatycznie przed "
                "wysłaniem, a korekty wystawiamy w ciągu 24 godzin.",
                you_said="Faktury przychodzą z błędami i trzeba czekać tygodniami na korektę.",
            ),
            translations={
                "en": ChangeText(
                    title="Errors on invoices",
                    summary="Since 1 December every invoice is checked automatically before "
                    "it is sent, and corrections are issued within 24 hours.",
                    you_said="Invoices arrive with errors and corrections take weeks.",
                )
            },
            audience=ChangeAudience(
                response_ids=tuple(self.response_ids),
                segment=ChangeSegment(survey_id=CAMPAIGN_SURVEY),
            ),
            decided_by="maria.director",
            decided_at=datetime.now(UTC),
        )
        return new_event(
            change, tenant_id=CAMPAIGN_TENANT, source=ORCHESTRATOR, clock=SystemClock()
        )


def _customer(person: Any) -> Customer:
    return Customer(id=person.id, email=person.email, name=person.name, locale=person.locale)


async def produce(
    settings: CommonSettings, events: Iterable[CloudEvent[Any]], *, client_id: str
) -> tuple[int, float]:
    """Produce `events` to their contracts' topics in order (key = partition key), `CHUNK` at a
    time, the next chunk made in a thread while the current one is sent; (events, seconds)."""
    prefix = settings.kafka_topic_prefix
    source = iter(events)

    def next_chunk() -> list[OutboundRecord]:
        return [
            OutboundRecord(e.data.TOPIC.address(prefix), e.partitionkey, e.encode())
            for e in itertools.islice(source, CHUNK)
        ]

    producer = EventProducer(settings.kafka_bootstrap_servers, client_id=client_id)
    await producer.start()
    started = time.perf_counter()
    produced = 0
    sending: asyncio.Task[None] | None = None
    try:
        while records := await asyncio.to_thread(next_chunk):
            produced += len(records)
            if sending is not None:
                await sending
            sending = asyncio.create_task(producer.send_batch(records))
        if sending is not None:
            await sending
    finally:
        await producer.stop()
    return produced, time.perf_counter() - started
