"""Realistic response events for `make bench-scoring`: a year of NPS answers in arrival order.

`ResponseFeed(...).events()` yields `response.received.v1` CloudEvents (tenant `bench`, or each
account in one of `tenants` in turn; source `/closeloop/ingest`, event time = when ingest received the answer) ordered by arrival, as a real
responses topic is, with about `corrections_percent` % of them followed later by a
`response.corrected.v1` (version 2: another score, maybe a comment added; same answer day and
segments, `previous` = version 1). Everything is drawn from one seeded `random.Random`, so a seed
gives the same answers every time (event ids are random UUIDs).

The shape, chosen to look like a B2B company's feedback, not uniform noise:
- accounts sized by a Zipf law (the biggest holds a few % of all customers and answers), each
  with a home region, one to three products and a mood that tilts its scores;
- customers mostly in their account's region; Polish ones answer in Polish (locale `pl-PL`, some
  without diacritics, as typed on a phone), the others in English (`en`);
- three surveys (relationship, after support, after delivery), each with its touchpoints; four
  channels; about 45 % promoters, 30 % passives and 25 % detractors; about half with a comment
  about a typical theme (support, price, delivery, app, invoice, account manager);
- received over the last 365 days, answered a few minutes before.
`tally` counts the answers generated per day and segment, so the benchmark can check that the
API's `n` over a window and filters is what was produced.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from closeloop_common.clock import FixedClock
from closeloop_common.events import (
    CloudEvent,
    Customer,
    ResponseCorrectedV1,
    ResponseReceivedV1,
    ResponseVersion,
    Segments,
    categorize,
    new_event,
)
from closeloop_devtools.scoring_comments import comment_about

TENANT = "bench"
SOURCE = "/closeloop/ingest"
REGIONS = {"PL": 40, "DE": 15, "UK": 12, "CZ": 8, "FR": 8, "NL": 7, "SK": 5, "LT": 5}
PRODUCTS = {
    "billing": 30,
    "payments": 25,
    "logistics": 20,
    "mobile-app": 15,
    "marketplace": 7,
    "analytics": 3,
}
CHANNELS = {"email": 55, "in-app": 25, "sms": 10, "web": 10}
# survey -> (weight, its touchpoints)
SURVEYS: dict[str, tuple[int, tuple[str, ...]]] = {
    "relationship-2026": (40, ("onboarding", "renewal", "purchase", "invoice")),
    "post-support": (30, ("support-ticket",)),
    "post-delivery": (30, ("delivery",)),
}
TOOLS = {"typeform": 50, "api": 30, "delighted": 20}
# Weights of the scores 0..10: 25 % detractors, 30 % passives, 45 % promoters.
SCORE_WEIGHTS = (2.0, 1.0, 1.5, 2.0, 2.5, 5.0, 11.0, 13.0, 17.0, 20.0, 25.0)
# An account's mood: (share of accounts, detractor weight factor, promoter weight factor).
MOODS = ((10, 0.5, 1.3), (20, 0.8, 1.1), (40, 1.0, 1.0), (20, 1.3, 0.9), (10, 2.0, 0.7))
COMMENT_CHANCE = {"promoter": 0.38, "passive": 0.45, "detractor": 0.70}
ZIPF_EXPONENT = 0.9
FIRST_NAMES = {
    "pl-PL": ("Anna", "Piotr", "Katarzyna", "Tomasz", "Magdalena", "Paweł", "Ewa", "Michał"),
    "en": ("Emma", "Oliver", "Sophie", "James", "Hannah", "Lukas", "Marie", "Jan"),
}
LAST_NAMES = {
    "pl-PL": ("Nowak", "Wójcik", "Kowalczyk", "Woźniak", "Mazur", "Krawczyk", "Zając", "Król"),
    "en": ("Smith", "Müller", "Novák", "Martin", "Jansen", "Brown", "Schmidt", "Dubois"),
}


def ascii_of(text: str) -> str:
    """`text` without diacritics (ł is not a composed letter, so it is mapped by hand)."""
    text = text.replace("ł", "l").replace("Ł", "L")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _cumulative(weights: dict[str, int]) -> tuple[list[str], list[float]]:
    return list(weights), list(itertools.accumulate(map(float, weights.values())))


def _pick(rng: random.Random, cumulative: Sequence[float]) -> int:
    """An index drawn by cumulative weights (`random.choices` for one, without its overhead)."""
    return bisect.bisect(cumulative, rng.random() * cumulative[-1])


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    tenant: str
    region: str
    products: tuple[str, ...]
    score_weights: tuple[float, ...]  # cumulative, over 0..10


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    account: int
    region: str
    locale: str
    email: str
    name: str


@dataclass(slots=True)
class Tally:
    """Answers generated per answer day (UTC) and segment: what `n` over a window must be."""

    by_region_product: Counter[tuple[date, str, str]] = field(default_factory=Counter)
    by_account: Counter[tuple[date, str]] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    comments: int = 0
    polish_comments: int = 0

    def n(
        self,
        first_day: date,
        last_day: date,
        *,
        region: str | None = None,
        product: str | None = None,
        account: str | None = None,
    ) -> int:
        """Answers from `first_day` to `last_day` (inclusive); `account` must be a watched one."""
        if account is not None:
            return sum(
                count
                for (day, a), count in self.by_account.items()
                if a == account and first_day <= day <= last_day
            )
        return sum(
            count
            for (day, r, p), count in self.by_region_product.items()
            if first_day <= day <= last_day and region in (None, r) and product in (None, p)
        )


class ResponseFeed:
    """`responses` distinct answers of `customers` customers in `accounts` accounts."""

    def __init__(
        self,
        *,
        responses: int,
        accounts: int = 10_000,
        customers: int = 200_000,
        corrections_percent: float = 1.0,
        seed: int = 2026,
        now: datetime | None = None,
        watched_accounts: int = 3,
        tenants: Sequence[str] = (TENANT,),
    ) -> None:
        self.responses = responses
        self.tenants = tuple(tenants)
        self.corrections_percent = corrections_percent
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self.rng = random.Random(seed)
        self.accounts = self._make_accounts(accounts)
        self.people = self._make_people(customers)
        # Zipf: the lowest account numbers are the biggest; these are the ones worth a query.
        self.watched = {a.id for a in self.accounts[:watched_accounts]}
        self.tally = Tally()
        self.corrections = 0
        self._surveys, self._survey_weights = _cumulative({s: w for s, (w, _) in SURVEYS.items()})
        self._channels, self._channel_weights = _cumulative(CHANNELS)
        self._tools, self._tool_weights = _cumulative(TOOLS)

    @property
    def biggest_account(self) -> str:
        return self.accounts[0].id

    def _make_accounts(self, count: int) -> list[Account]:
        rng = self.rng
        regions, region_weights = _cumulative(REGIONS)
        products, product_weights = _cumulative(PRODUCTS)
        moods = [
            tuple(
                itertools.accumulate(
                    w * (low if s <= 6 else high if s >= 9 else 1.0)
                    for s, w in enumerate(SCORE_WEIGHTS)
                )
            )
            for _, low, high in MOODS
        ]
        mood_weights = list(itertools.accumulate(float(share) for share, _, _ in MOODS))
        accounts = []
        for k in range(count):
            owned = {
                rng.choices(products, cum_weights=product_weights)[0]
                for _ in range(rng.choice((1, 1, 2, 3)))
            }
            accounts.append(
                Account(
                    id=f"acc-{k + 1:05d}",
                    tenant=self.tenants[k % len(self.tenants)],
                    region=rng.choices(regions, cum_weights=region_weights)[0],
                    products=tuple(sorted(owned)),
                    score_weights=rng.choices(moods, cum_weights=mood_weights)[0],
                )
            )
        return accounts

    def _make_people(self, count: int) -> list[Person]:
        """Customers spread over accounts by Zipf weights; every account has at least one."""
        rng = self.rng
        sizes = list(
            itertools.accumulate(1 / (k + 1) ** ZIPF_EXPONENT for k in range(len(self.accounts)))
        )
        indices = range(len(self.accounts))
        owners = [*indices, *rng.choices(indices, cum_weights=sizes, k=count - len(indices))]
        regions = list(REGIONS)
        people = []
        for n, owner in enumerate(owners):
            region = self.accounts[owner].region if rng.random() < 0.85 else rng.choice(regions)
            polish = rng.random() < (0.95 if region == "PL" else 0.05)
            locale = "pl-PL" if polish else "en"
            first, last = rng.choice(FIRST_NAMES[locale]), rng.choice(LAST_NAMES[locale])
            domain = "example.pl" if polish else "example.com"
            people.append(
                Person(
                    id=f"cust-{n + 1:06d}",
                    account=owner,
                    region=region,
                    locale=locale,
                    email=ascii_of(f"{first}.{last}.{n + 1}@{domain}").lower(),
                    name=f"{first} {last}",
                )
            )
        return people

    def events(self) -> Iterator[CloudEvent[Any]]:
        """Every event in arrival order: the answers, and each correction after its answer."""
        rng = self.rng
        span = timedelta(days=365).total_seconds() - 60
        start = self.now - timedelta(days=365)
        arrivals = sorted(rng.random() * span for _ in range(self.responses))
        clock = FixedClock(self.now)
        pending: list[tuple[float, int, ResponseReceivedV1]] = []
        for n, offset in enumerate(arrivals):
            while pending and pending[0][0] <= offset:
                at, _, original = heapq.heappop(pending)
                yield self._correction(original, start + timedelta(seconds=at), clock)
            received_at = start + timedelta(seconds=offset)
            answer, tenant = self._answer(n, received_at)
            clock.set(received_at)
            yield new_event(answer, tenant_id=tenant, source=SOURCE, clock=clock)
            if rng.random() * 100 < self.corrections_percent:
                later = offset + rng.expovariate(1 / (6 * 3600)) + 60
                if later <= span:
                    heapq.heappush(pending, (later, n, answer))
        while pending:
            at, _, original = heapq.heappop(pending)
            yield self._correction(original, start + timedelta(seconds=at), clock)

    def answers(self) -> Iterator[tuple[ResponseReceivedV1, str]]:
        """The answers alone (no envelope, no corrections), in arrival order, with their tenant."""
        span = timedelta(days=365).total_seconds() - 60
        start = self.now - timedelta(days=365)
        for n, offset in enumerate(sorted(self.rng.random() * span for _ in range(self.responses))):
            yield self._answer(n, start + timedelta(seconds=offset))

    def _answer(self, n: int, received_at: datetime) -> tuple[ResponseReceivedV1, str]:
        """The n-th answer, and its account's tenant."""
        rng = self.rng
        person = self.people[rng.randrange(len(self.people))]
        account = self.accounts[person.account]
        survey = self._surveys[_pick(rng, self._survey_weights)]
        touchpoint = rng.choice(SURVEYS[survey][1])
        score = _pick(rng, account.score_weights)
        category = categorize(score)
        answered_at = received_at - timedelta(seconds=rng.uniform(30, 600))
        product = rng.choice(account.products)
        segments = Segments(
            product=product,
            region=person.region,
            channel=self._channels[_pick(rng, self._channel_weights)],
            touchpoint=touchpoint,
        )
        comment = None
        if rng.random() < COMMENT_CHANCE[category.value]:
            comment = self._comment(person, category.value, touchpoint)
            self.tally.comments += 1
            self.tally.polish_comments += person.locale == "pl-PL"
        self._count(answered_at.date(), account.id, person.region, product, category.value)
        answer = ResponseReceivedV1(
            response_id=f"resp-{n + 1:08d}",
            survey_id=survey,
            customer=Customer(
                id=person.id, email=person.email, name=person.name, locale=person.locale
            ),
            account_id=account.id,
            score=score,
            category=category,
            comment=comment,
            answered_at=answered_at,
            received_at=received_at,
            segments=segments,
            source=self._tools[_pick(rng, self._tool_weights)],
        )
        return answer, account.tenant

    def _comment(self, person: Person, category: str, touchpoint: str) -> str:
        text = comment_about(
            self.rng, locale=person.locale, category=category, touchpoint=touchpoint
        )
        if person.locale == "pl-PL" and self.rng.random() < 0.3:
            text = ascii_of(text)  # typed on a phone without Polish letters
        return text

    def _count(self, day: date, account: str, region: str, product: str, category: str) -> None:
        self.tally.by_region_product[(day, region, product)] += 1
        if account in self.watched:
            self.tally.by_account[(day, account)] += 1
        self.tally.categories[category] += 1

    def _correction(
        self, original: ResponseReceivedV1, received_at: datetime, clock: FixedClock
    ) -> CloudEvent[ResponseCorrectedV1]:
        """Version 2 of `original`: the respondent changed their score (and maybe the comment)."""
        rng = self.rng
        score = min(10, max(0, original.score + rng.choice((-3, -2, -1, 1, 2, 3))))
        if score == original.score:
            score = 9 if original.score < 9 else 6
        category = categorize(score)
        person = self.people[int(original.customer.id.removeprefix("cust-")) - 1]
        comment = original.comment
        if comment is None or rng.random() < 0.5:
            comment = self._comment(person, category.value, original.segments.touchpoint or "")
        correction = ResponseCorrectedV1(
            response_id=original.response_id,
            version=2,
            survey_id=original.survey_id,
            customer=original.customer,
            account_id=original.account_id,
            score=score,
            category=category,
            comment=comment,
            answered_at=original.answered_at,
            updated_at=received_at - timedelta(seconds=rng.uniform(5, 120)),
            received_at=received_at,
            segments=original.segments,
            source=original.source,
            previous=ResponseVersion.of(original, version=1),
        )
        self.corrections += 1
        clock.set(received_at)
        tenant = self.accounts[person.account].tenant
        return new_event(correction, tenant_id=tenant, source=SOURCE, clock=clock)
