"""Closeloop's event contracts: the only thing services (and CRMs) share on the wire.

Every event is a CloudEvents 1.0 envelope in *structured mode*: the Kafka record value is the whole
event as JSON (`content-type: application/cloudevents+json` header), so it survives tools that drop
headers (sinks to object storage, replays, `kcat`). Extension attributes:
- `tenantid`: the tenant (company) the event belongs to; every key and query includes it.
- `partitionkey`: the Kafka record key, `<tenant>:<customer id>`, so one customer's events stay in
  order on one partition (`<tenant>:<headline>` for a headline segment's NPS events).

- `traceparent` and `tracestate` (optional): the W3C Trace Context of the work that emitted the
  event, so one trace follows a response from webhook to email (the CloudEvents distributed
  tracing extension; see "Trace context" below).

Contracts are frozen and versioned: the version is part of the `type`
(`dev.closeloop.response.received.v1`). A breaking change is a new model with a new version that is
published beside the old one for a deprecation period, never an edit of an existing model.
Generated JSON Schemas and an AsyncAPI document live in `contracts/` (see `contracts.py`).

Segment dimensions are defined here once: `SegmentAttribute` (the optional attributes of
`Segments`) and `Dimension` (overall, survey, account, then those attributes); scoring, its API
and `SegmentScore` all derive from them. The contracts import no settings: CRMs and tools use this
module without a service's environment.

Custom attributes: besides the fixed `Segments`, a response or invitation may carry `attributes`,
a map of names a tenant chooses (`plan`, `tier`; `ATTRIBUTE_NAME_PATTERN`, at most
`MAX_ATTRIBUTES`) to text values. Which of them are scored is scoring's configuration
(`SCORING_ATTRIBUTES`), not the contract's.

Additive fields: a version may gain an optional field with a default (`attributes` was added to
`response.received/corrected/suspected.v1` and `invitation.sent.v1` that way) under two rules:
- consumers first: every contract refuses fields it does not know (`extra="forbid"`), so a
  consumer built before the field would dead-letter an event carrying it; every consumer is
  upgraded before any producer emits the field;
- an event that does not use the field is unchanged on the wire: the field is left out while it
  holds its default (an empty `attributes` map is never written, `exclude_if`), so such events
  are byte for byte what earlier producers wrote and earlier consumers read them as before.
A field that old consumers must understand, or a change of meaning, is a new version instead.

Trace context: when tracing is on (`tracing.py`), an event emitted by a handler or a command
carries the context of the span that made it in `traceparent` (and `tracestate` when there is
one); the outbox stores the whole event, so the context survives it, and a dead letter keeps the
record value and so the context. Both attributes are left out of the JSON when absent, so with
tracing off every event is byte for byte what earlier producers wrote. The envelope ignores
attributes it does not know (`extra="ignore"`), so consumers built before the extension read
events that carry it. A malformed `traceparent` is not poison: tracing ignores it.

Events from Kafka are checked like HTTP input (`storable.py`): a NUL character anywhere, or an
instant that cannot be converted to UTC, makes an event undecodable (poison), never a database
error in a handler.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from closeloop_common.clock import Clock
from closeloop_common.identifiers import TENANT_ID_PATTERN
from closeloop_common.storable import Instant, may_hold_nul, nul_locations

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
SCHEMA_URN_PREFIX = "urn:closeloop:schema:"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# W3C Trace Context: a version-00 traceparent is 55 characters (later versions may add fields);
# vendors keep a tracestate of at least 512.
MAX_TRACEPARENT = 256
MAX_TRACESTATE = 1024
LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"


class Topic(StrEnum):
    """Logical topic names; the broker name is `<KAFKA_TOPIC_PREFIX>.<logical name>`."""

    RESPONSES = "responses"
    NPS = "nps"
    CASES = "cases"
    NOTIFICATIONS = "notifications"
    CHANGES = "changes"
    PRIVACY = "privacy"
    DEADLETTER = "deadletter"

    def address(self, prefix: str) -> str:
        return f"{prefix}.{self.value}"


class Category(StrEnum):
    PROMOTER = "promoter"
    PASSIVE = "passive"
    DETRACTOR = "detractor"


def categorize(score: int) -> Category:
    """NPS category of a 0-10 answer: 9-10 promoter, 7-8 passive, 0-6 detractor."""
    if not 0 <= score <= 10:
        raise ValueError(f"an NPS score is 0..10, got {score}")
    if score >= 9:
        return Category.PROMOTER
    if score >= 7:
        return Category.PASSIVE
    return Category.DETRACTOR


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Customer(Contract):
    """The person who answered; `id` is the survey tool's or CRM's customer id."""

    id: str = Field(min_length=1, max_length=200)
    email: str | None = Field(None, max_length=320, pattern=EMAIL_PATTERN)
    name: str | None = Field(None, max_length=200)
    locale: str | None = Field(
        None, max_length=35, pattern=LOCALE_PATTERN, examples=["pl-PL", "en"]
    )


SegmentAttribute = Literal["product", "region", "channel", "touchpoint"]
"""The optional attributes a response is scored under, besides survey and account."""
Dimension = Literal["overall", "survey", "account", SegmentAttribute]
"""What NPS is kept per: everything (`overall`), a survey, an account, or a segment attribute."""
SEGMENT_ATTRIBUTES: tuple[SegmentAttribute, ...] = get_args(SegmentAttribute)
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)


class Segments(Contract):
    """Segment attributes a response is scored under (besides survey and account)."""

    product: str | None = Field(None, min_length=1, max_length=100)
    region: str | None = Field(None, min_length=1, max_length=100)
    channel: str | None = Field(None, min_length=1, max_length=100)
    touchpoint: str | None = Field(None, min_length=1, max_length=100)

    def set_attributes(self) -> list[tuple[SegmentAttribute, str]]:
        """(attribute, value) of every attribute given, in `SEGMENT_ATTRIBUTES` order."""
        values = ((a, getattr(self, a)) for a in SEGMENT_ATTRIBUTES)
        return [(attribute, value) for attribute, value in values if value is not None]


# The fields above are the wire shape of `SegmentAttribute`; typed attribute access needs them
# written out, so this check keeps the two from drifting apart.
if tuple(Segments.model_fields) != SEGMENT_ATTRIBUTES:
    raise TypeError("Segments' fields must be exactly SEGMENT_ATTRIBUTES, in that order")


ATTRIBUTE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
MAX_ATTRIBUTES = 20
AttributeName = Annotated[str, StringConstraints(pattern=ATTRIBUTE_NAME_PATTERN)]
AttributeValue = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]*$")
]


def _no_attributes(value: Mapping[str, str]) -> bool:
    return not value


def _absent(value: object) -> bool:
    return value is None


Attributes = Annotated[
    dict[AttributeName, AttributeValue],
    Field(
        max_length=MAX_ATTRIBUTES,
        # Left out of the JSON when empty: see "Additive fields" in the module docstring.
        exclude_if=_no_attributes,
        description="custom attributes (name -> value) the tenant segments by, e.g. "
        '{"plan": "gold"}; absent means none',
        examples=[{"plan": "gold", "tier": "smb"}],
        # Pydantic describes the names as `patternProperties`; this refuses every other name.
        json_schema_extra={"additionalProperties": False},
    ),
]
"""A response's or invitation's custom attributes (see the module docstring)."""


class EventData(Contract):
    """Base of every event payload. Subclasses name their CloudEvents type and topic."""

    EVENT_TYPE: ClassVar[str]
    TOPIC: ClassVar[Topic]
    KEY_DESCRIPTION: ClassVar[str] = "<tenant id>:<customer id>"

    def customer_key(self) -> str:
        """The part of the partition key after the tenant: keeps a customer's events ordered."""
        raise NotImplementedError


class ResponseReceivedV1(EventData):
    """A survey response was accepted by ingest (first delivery only; duplicates emit nothing)."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.response.received.v1"
    TOPIC: ClassVar[Topic] = Topic.RESPONSES

    response_id: str = Field(min_length=1, max_length=200)
    survey_id: str = Field(min_length=1, max_length=200)
    customer: Customer
    account_id: str | None = Field(None, min_length=1, max_length=200)
    score: int = Field(ge=0, le=10)
    category: Category
    comment: str | None = Field(None, max_length=10_000)
    answered_at: Instant
    received_at: Instant
    segments: Segments = Segments()
    attributes: Attributes = {}
    source: str = Field(description="where it came from: `api` or a survey tool's name")

    def customer_key(self) -> str:
        return self.customer.id


class ResponseVersion(Contract):
    """What a response said in one version: enough for a consumer to take back its contribution
    (segment, day and category) without keeping the response itself."""

    version: int = Field(ge=1)
    survey_id: str = Field(min_length=1, max_length=200)
    account_id: str | None = Field(None, min_length=1, max_length=200)
    score: int = Field(ge=0, le=10)
    category: Category
    answered_at: Instant
    segments: Segments = Segments()
    attributes: Attributes = {}

    @classmethod
    def of(
        cls, response: ResponseReceivedV1 | ResponseCorrectedV1, *, version: int
    ) -> ResponseVersion:
        """What `response` said, as version `version` (the `previous` of its correction)."""
        return cls(
            version=version,
            survey_id=response.survey_id,
            account_id=response.account_id,
            score=response.score,
            category=response.category,
            answered_at=response.answered_at,
            segments=response.segments,
            attributes=response.attributes,
        )


class ResponseCorrectedV1(EventData):
    """A new version of an accepted response: the survey tool sent it again with a later update
    time and other content (Delighted's `survey_response.updated`, Formbricks created -> finished,
    a canonical POST with a later `updated_at`). Consumers apply it in place of `previous`; one
    whose last applied version is `version` or later ignores it (versions can arrive late)."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.response.corrected.v1"
    TOPIC: ClassVar[Topic] = Topic.RESPONSES

    response_id: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=2, description="1 is the `response.received` event")
    survey_id: str = Field(min_length=1, max_length=200)
    customer: Customer
    account_id: str | None = Field(None, min_length=1, max_length=200)
    score: int = Field(ge=0, le=10)
    category: Category
    comment: str | None = Field(None, max_length=10_000)
    answered_at: Instant
    updated_at: Instant
    received_at: Instant
    segments: Segments = Segments()
    attributes: Attributes = {}
    source: str
    previous: ResponseVersion = Field(description="the version this one replaces")

    def customer_key(self) -> str:
        return self.customer.id


SuspicionReason = Literal["answered_right_after_invitation", "link_scanner_user_agent"]


class ResponseSuspectedV1(EventData):
    """An accepted response that looks automated (an email security scanner following the score
    link: no comment, and answered seconds after the invitation or from a known scanner's user
    agent). It is kept, but no `response.received` is published for it until someone confirms
    it (`POST /v1/responses/{id}/confirm`), so aggregates and cases leave it out meanwhile.
    Each later version of a still-suspected response is published as this event again."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.response.suspected.v1"
    TOPIC: ClassVar[Topic] = Topic.RESPONSES

    response_id: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1)
    survey_id: str = Field(min_length=1, max_length=200)
    customer: Customer
    account_id: str | None = Field(None, min_length=1, max_length=200)
    score: int = Field(ge=0, le=10)
    category: Category
    answered_at: Instant
    received_at: Instant
    segments: Segments = Segments()
    attributes: Attributes = {}
    source: str
    reasons: tuple[SuspicionReason, ...] = Field(min_length=1)

    def customer_key(self) -> str:
        return self.customer.id


class InvitationSentV1(EventData):
    """Someone was asked to answer a survey: the base of response rates, and of reaching the
    people who did not answer ("you said, we did" to a whole segment)."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.invitation.sent.v1"
    TOPIC: ClassVar[Topic] = Topic.RESPONSES

    invitation_id: str = Field(min_length=1, max_length=200)
    survey_id: str = Field(min_length=1, max_length=200)
    customer: Customer
    account_id: str | None = Field(None, min_length=1, max_length=200)
    channel: str = Field(min_length=1, max_length=100, examples=["email", "sms", "in-app"])
    invited_at: Instant
    segments: Segments = Segments()
    attributes: Attributes = {}

    def customer_key(self) -> str:
        return self.customer.id


class SegmentScore(Contract):
    """All-time counts of one segment after a response was counted; NPS is derived from them."""

    dimension: Dimension
    segment: str
    promoters: int = Field(ge=0)
    passives: int = Field(ge=0)
    detractors: int = Field(ge=0)
    nps: float = Field(ge=-100, le=100, description="% promoters - % detractors")


class NpsUpdatedV1(EventData):
    """Deprecated: scoring no longer publishes it; subscribe to `dev.closeloop.nps.changed.v1`.
    It carried, per counted response, the all-time totals of every segment the response touched,
    which cost a read per response; the model and its schema stay for the deprecation period so
    that consumers can still decode events already on the topic."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.nps.updated.v1"
    TOPIC: ClassVar[Topic] = Topic.NPS

    response_id: str
    customer_id: str
    category: Category
    answered_at: Instant
    scores: tuple[SegmentScore, ...]

    def customer_key(self) -> str:
        return self.customer_id


SegmentFilter = Literal["survey", "account", SegmentAttribute]
"""A filter that selects a segment: its survey, its account, or a segment attribute."""
HEADLINE_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class HeadlineWindow(Contract):
    """The window a headline's NPS was computed over: local days [from, to) of `time_zone`."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", serialize_by_alias=True, validate_by_name=True
    )

    name: str = Field(
        min_length=1,
        max_length=32,
        description="the configured window: 7d, 30d, 90d (rolling, today included), month, "
        "quarter, previous-month, previous-quarter or all",
        examples=["30d"],
    )
    first: date | None = Field(
        alias="from", description="first local day, inclusive; null for all time"
    )
    end: date | None = Field(
        alias="to", description="local day the window ends before (exclusive); null for all time"
    )
    time_zone: str = Field(
        min_length=1, max_length=64, description="IANA time zone of the days", examples=["UTC"]
    )


class NpsChangedV1(EventData):
    """The NPS of a configured headline segment moved: by at least the configured least change
    since the last published value, and no sooner than the debounce time after it (the first
    value with answers is published too, and a move to or from "no answers in the window").
    Computed periodically by scoring over the headline's window; the record key is
    `<tenant>:<headline>`, so one headline's events stay in order."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.nps.changed.v1"
    TOPIC: ClassVar[Topic] = Topic.NPS
    KEY_DESCRIPTION: ClassVar[str] = "<tenant id>:<headline name>"

    headline: str = Field(
        pattern=HEADLINE_NAME_PATTERN, description="the headline's configured name"
    )
    filters: dict[SegmentFilter, Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        description="the segment: every answer matching all of these (empty: all answers)",
        examples=[{"region": "PL", "product": "billing"}],
    )
    window: HeadlineWindow = Field(description="the window the figures are of")
    n: int = Field(ge=0, description="answers counted in the window (suspected ones left out)")
    promoters: int = Field(ge=0, description="answers of 9 or 10")
    passives: int = Field(ge=0, description="answers of 7 or 8")
    detractors: int = Field(ge=0, description="answers of 0 to 6")
    nps: float | None = Field(
        ge=-100, le=100, description="% promoters - % detractors; null when n = 0 (no data)"
    )
    ci_low: float | None = Field(
        ge=-100, le=100, description="lower bound of the interval at `confidence`; null when n = 0"
    )
    ci_high: float | None = Field(
        ge=-100, le=100, description="upper bound of the interval at `confidence`; null when n = 0"
    )
    confidence: float = Field(gt=0, lt=1, description="confidence level of the interval")
    method: Literal["wald", "adjusted-wald"] = Field(description="how the interval is computed")
    insufficient: bool = Field(description="fewer answers than SCORING_MIN_RESPONSES")
    previous_nps: float | None = Field(
        ge=-100,
        le=100,
        description="the NPS this headline's previous event carried; null on its first event "
        "(or after its definition changed) and when the previous one had no data",
    )
    change: float | None = Field(
        ge=-200,
        le=200,
        description="`nps` - `previous_nps` in NPS points; null when either is null",
    )
    computed_at: Instant = Field(description="when the figures were computed")

    def customer_key(self) -> str:
        return self.headline


CaseStatusName = Literal["open", "in_progress", "contacted", "resolved", "closed"]
CaseTransitionName = Literal[
    "claimed",
    "reassigned",
    "contact_logged",
    "root_causes_added",
    "resolved",
    "closed",
    "reopened",
    "retyped",
]
PriorityName = Literal["low", "normal", "high", "urgent"]
ContactChannelName = Literal["phone", "email", "sms", "chat", "meeting", "other"]
ContactOutcomeName = Literal["reached", "no_answer", "left_message", "wrong_contact", "refused"]
ResolutionOutcomeName = Literal[
    "solved", "compensated", "explained", "not_solvable", "customer_unreachable"
]


class Playbook(StrEnum):
    """What the follow-up of a case is for, by NPS category."""

    APOLOGY_CALLBACK = "apology_callback"  # detractor: apologise, call back, find the root cause
    IMPROVEMENT_ASK = "improvement_ask"  # passive: ask for one or two improvements
    THANKS_REFERRAL = "thanks_referral"  # promoter: thank, invite a review or referral


class Owner(Contract):
    id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=320, pattern=EMAIL_PATTERN)


class CaseOpenedV1(EventData):
    """The orchestrator opened a follow-up case for a response and assigned it an owner."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.case.opened.v1"
    TOPIC: ClassVar[Topic] = Topic.CASES

    case_id: uuid.UUID
    response_id: str
    survey_id: str
    customer: Customer
    account_id: str | None
    score: int = Field(ge=0, le=10)
    category: Category
    comment: str | None
    playbook: Playbook
    owner: Owner = Field(
        description="who answers for the case: its assigned owner, or, while it waits in a team's "
        "queue (`queue` set), the team itself (id `queue:<queue>`, the team's shared mailbox)"
    )
    key_account: bool
    opened_at: Instant
    first_contact_due_at: Instant
    # Additive fields (see the module docstring), left out of the JSON while null.
    case_type: Annotated[
        Category | None, Field(exclude_if=_absent, description="what kind of follow-up")
    ] = None
    priority: Annotated[PriorityName | None, Field(exclude_if=_absent)] = None
    channel: Annotated[
        ContactChannelName | None,
        Field(exclude_if=_absent, description="the recommended way to contact the customer"),
    ] = None
    resolution_due_at: Annotated[Instant | None, Field(exclude_if=_absent)] = None
    team_id: Annotated[str | None, Field(exclude_if=_absent, max_length=100)] = None
    queue: Annotated[
        str | None,
        Field(exclude_if=_absent, max_length=100, description="set while nobody owns the case"),
    ] = None

    def customer_key(self) -> str:
        return self.customer.id


class ContactAttempt(Contract):
    channel: ContactChannelName
    outcome: ContactOutcomeName


class CaseUpdatedV1(EventData):
    """A change of a follow-up case after it was opened: one event per accepted command, in the
    order of the case's versions (the case's history is the sequence of these events). The
    fields after `note` carry the case as it is after the change, so a consumer needs no other
    event to act on it (the notifier's "what we did" message on `resolved`, a CRM's mirror)."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.case.updated.v1"
    TOPIC: ClassVar[Topic] = Topic.CASES

    case_id: uuid.UUID
    response_id: str
    customer: Customer
    account_id: str | None
    transition: CaseTransitionName
    status_before: CaseStatusName
    status: CaseStatusName
    version: int = Field(ge=2, description="the case's version after the change (opened = 1)")
    actor: str = Field(
        min_length=1, max_length=200, description="who did it: a user id or `system`"
    )
    at: Instant
    note: str | None = Field(None, max_length=4000, description="what was done, what was agreed")
    contact: ContactAttempt | None = Field(None, description="for `contact_logged`")
    outcome: ResolutionOutcomeName | None = Field(None, description="for `resolved` and after")
    case_type: Category
    playbook: Playbook
    priority: PriorityName
    channel: ContactChannelName = Field(description="the recommended way to contact the customer")
    team_id: str | None = Field(max_length=100)
    queue: str | None = Field(max_length=100, description="set while nobody owns the case")
    owner: Owner | None = Field(description="null: in the team's queue")
    root_causes: tuple[str, ...] = Field(
        (), max_length=20, description="normalised tags; they feed scoring's drivers"
    )
    first_contact_due_at: Instant
    resolution_due_at: Instant | None
    first_contacted_at: Instant | None
    resolved_at: Instant | None
    closed_at: Instant | None
    resurvey_due_at: Instant | None = Field(
        None, description="when the customer is to be asked again (set on `closed`)"
    )

    def customer_key(self) -> str:
        return self.customer.id


class NoResponseCaseOpenedV1(EventData):
    """Silence is a signal: a key contact of a key account did not answer a survey invitation
    within the tenant's silence window, so the orchestrator opened a lack-of-response case for
    the account's owner. The case has no answer (no score, category or comment), which is why it
    is not a `case.opened.v1`; its later changes are `case.no_response_updated.v1`, and its SLA
    alerts are ordinary `case.sla_alert.v1` events."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.case.no_response_opened.v1"
    TOPIC: ClassVar[Topic] = Topic.CASES

    case_id: uuid.UUID
    response_id: str = Field(
        description="`no-response:<invitation id>`: the case's key in its SLA alerts and updates"
    )
    invitation_id: str = Field(min_length=1, max_length=200, description="the unanswered one")
    survey_id: str
    customer: Customer = Field(description="the contact who did not answer")
    account_id: str
    invited_at: Instant
    silent_days: float = Field(gt=0, description="the silence window the contact let pass")
    owner: Owner = Field(
        description="the account's owner or, while the case waits in a team's queue (`queue` "
        "set), the team itself (id `queue:<queue>`, the team's shared mailbox)"
    )
    key_account: bool
    priority: PriorityName
    channel: ContactChannelName = Field(description="the recommended way to reach the contact")
    opened_at: Instant
    first_contact_due_at: Instant
    team_id: str | None = Field(max_length=100)
    queue: str | None = Field(max_length=100, description="set while nobody owns the case")

    def customer_key(self) -> str:
        return self.customer.id


class NoResponseCaseUpdatedV1(CaseUpdatedV1):
    """A change of a lack-of-response case (see `case.no_response_opened.v1`): the fields of
    `case.updated.v1`, for a case whose type is `no_response` and playbook `account_outreach`,
    plus the unanswered invitation."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.case.no_response_updated.v1"
    TOPIC: ClassVar[Topic] = Topic.CASES

    # Narrower than the base's answer categories and playbooks: this case has no answer.
    case_type: Literal["no_response"]  # type: ignore[assignment]
    playbook: Literal["account_outreach"]  # type: ignore[assignment]
    invitation_id: str = Field(min_length=1, max_length=200)


class CaseSlaAlertV1(EventData):
    """A case's SLA clock reached a warning, its deadline (breach) or an escalation step."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.case.sla_alert.v1"
    TOPIC: ClassVar[Topic] = Topic.CASES

    case_id: uuid.UUID
    response_id: str
    customer: Customer
    account_id: str | None
    clock: Literal["first_contact", "resolution"]
    kind: Literal["warning", "breach", "escalation"]
    step: int = Field(ge=0, le=20, description="0 for warning and breach; 1.. escalation steps")
    to: str = Field(min_length=1, max_length=50, description="`owner`, `team_lead`, `manager`, ...")
    recipient: Owner | None = Field(description="who is told; null when nobody holds that role")
    owner: Owner | None
    priority: PriorityName
    due_at: Instant = Field(description="when this alert was due")
    deadline: Instant = Field(description="the clock's deadline")
    fired_at: Instant

    def customer_key(self) -> str:
        return self.customer.id


class CaseResurveyDueV1(EventData):
    """Time to ask a customer again, N days after their case closed: ingest or a survey tool
    sends the invitation."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.case.resurvey_due.v1"
    TOPIC: ClassVar[Topic] = Topic.CASES

    case_id: uuid.UUID
    response_id: str
    survey_id: str
    customer: Customer
    account_id: str | None
    closed_at: Instant
    due_at: Instant

    def customer_key(self) -> str:
        return self.customer.id


class NotificationSentV1(EventData):
    """The notifier handed a message to the mail server (SMTP accepted it)."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.notification.sent.v1"
    TOPIC: ClassVar[Topic] = Topic.NOTIFICATIONS

    message_id: uuid.UUID
    case_id: uuid.UUID
    response_id: str
    customer_id: str
    template: str
    locale: str
    channel: Literal["email"]
    recipient: str
    subject: str
    attempts: int = Field(ge=1)
    sent_at: Instant

    def customer_key(self) -> str:
        return self.customer_id


class NotificationFailedV1(EventData):
    """A message will not be sent: the customer opted out, has no address, or delivery gave up."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.notification.failed.v1"
    TOPIC: ClassVar[Topic] = Topic.NOTIFICATIONS

    message_id: uuid.UUID
    case_id: uuid.UUID
    response_id: str
    customer_id: str
    template: str
    channel: Literal["email"]
    reason: Literal["opted_out", "no_recipient", "delivery_failed"]
    detail: str | None = None
    attempts: int = Field(ge=0)
    failed_at: Instant

    def customer_key(self) -> str:
        return self.customer_id


class ChangeText(Contract):
    """What to tell customers about a structural change, in one language."""

    title: str = Field(min_length=1, max_length=200, description="the issue, as customers know it")
    summary: str | None = Field(None, max_length=4000, description="what we did (when done)")
    reason: str | None = Field(None, max_length=4000, description="why not (when rejected)")
    you_said: str | None = Field(
        None, max_length=1000, description="what customers asked for, in their words"
    )


class ChangeSegment(Contract):
    """Whom a change concerns beyond its respondents: every invitation matching all the given
    fields (an empty segment matches every invitation of the tenant)."""

    survey_id: str | None = Field(None, min_length=1, max_length=200)
    account_id: str | None = Field(None, min_length=1, max_length=200)
    product: str | None = Field(None, min_length=1, max_length=100)
    region: str | None = Field(None, min_length=1, max_length=100)
    channel: str | None = Field(None, min_length=1, max_length=100)
    touchpoint: str | None = Field(None, min_length=1, max_length=100)
    invited_since: Instant | None = Field(None, description="only invitations sent since then")


class ChangeAudience(Contract):
    response_ids: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(
        (),
        max_length=10_000,
        description="the responses that raised the issue: their respondents hear about it "
        "(at most 10,000; a larger group is reached through `segment`)",
    )
    segment: ChangeSegment | None = Field(
        None,
        description="when set, everyone invited in this segment hears about it too, "
        "whether they answered or not",
    )


class ChangeSummaryV1(EventData):
    """A structural issue was done or rejected: tell the customers who raised it (and, when
    chosen, everyone invited in its segment) what changed, or why not. The notifier turns it
    into a "you said, we did" campaign; the same event delivered again is the same campaign."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.change.summary.v1"
    TOPIC: ClassVar[Topic] = Topic.CHANGES

    change_id: str = Field(min_length=1, max_length=200, description="the structural issue")
    status: Literal["done", "rejected"]
    locale: str = Field(max_length=35, pattern=LOCALE_PATTERN, description="language of `text`")
    text: ChangeText
    translations: dict[
        Annotated[str, StringConstraints(max_length=35, pattern=LOCALE_PATTERN)], ChangeText
    ] = Field(
        default_factory=dict,
        max_length=20,
        description="the same text in other languages; customers get theirs, else `text`",
    )
    audience: ChangeAudience
    decided_by: str = Field(min_length=1, max_length=200)
    decided_at: Instant

    @model_validator(mode="after")
    def _rejection_has_reason(self) -> ChangeSummaryV1:
        if self.status == "rejected":
            for locale, text in (self.locale, self.text), *self.translations.items():
                if not (text.reason and text.reason.strip()):
                    raise ValueError(f"a rejected change says why ({locale}: `reason` missing)")
        return self

    def customer_key(self) -> str:
        return f"change:{self.change_id}"


NotificationKindName = Literal[
    "thanks",
    "apology",
    "improvement_ask",
    "case_resolved",
    "change_summary",
    "owner_new_case",
    "sla_warning",
    "sla_breach",
    "sla_escalation",
    "overdue_digest",
]


class _NotificationV2(EventData):
    message_id: uuid.UUID
    kind: NotificationKindName
    audience: Literal["customer", "team"]
    channel: Literal["email", "webhook"]
    case_id: uuid.UUID | None = Field(description="the case the message is about, if any")
    campaign_id: uuid.UUID | None = Field(description="the campaign it belongs to, if any")
    response_id: str | None
    customer_id: str | None = Field(description="the customer it is to or about, if any")
    locale: str

    def customer_key(self) -> str:
        return self.customer_id or str(self.campaign_id or self.case_id or self.message_id)


class NotificationSentV2(_NotificationV2):
    """The notifier handed a message over: the mail server or the webhook endpoint accepted it.
    Every message of every kind; `notification.sent.v1` is still published beside it for the
    messages it can describe (a case's message to its customer by email)."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.notification.sent.v2"
    TOPIC: ClassVar[Topic] = Topic.NOTIFICATIONS

    recipient: str = Field(description="the address, or the webhook endpoint's host")
    subject: str
    attempts: int = Field(ge=1)
    sent_at: Instant


class NotificationFailedV2(_NotificationV2):
    """A message will not be sent: suppressed (opted out, over the frequency cap, a draft the
    owner discarded), no address, or delivery gave up."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.notification.failed.v2"
    TOPIC: ClassVar[Topic] = Topic.NOTIFICATIONS

    reason: Literal["opted_out", "frequency_capped", "discarded", "no_recipient", "delivery_failed"]
    detail: str | None = None
    attempts: int = Field(ge=0)
    failed_at: Instant


PrivacyService = Literal["ingest", "scoring", "orchestrator", "notifier"]
"""The services that hold data about a respondent and answer an erasure (their short names)."""
Identifier = Annotated[str, Field(min_length=1, max_length=320)]
MAX_ERASURE_IDENTIFIERS = 10_000


class ErasureRequestedV1(EventData):
    """An admin asked to erase a respondent (GDPR article 17). Ingest resolved what it holds for
    the tenant (the customer ids and addresses linked to the one given, their responses and
    invitations), erased its own copy in the same transaction, and asks every service to erase
    or anonymise theirs: each answers with `privacy.erasure_completed.v1`.
    This event carries the identifiers it names, so the `privacy` topic keeps them only for its
    retention (14 days), unlike `responses`, which keeps everything (see docs/privacy.md)."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.privacy.erasure_requested.v1"
    TOPIC: ClassVar[Topic] = Topic.PRIVACY
    KEY_DESCRIPTION: ClassVar[str] = "<tenant id>:erasure:<erasure id>"

    erasure_id: uuid.UUID
    customer_ids: tuple[Identifier, ...] = Field(max_length=MAX_ERASURE_IDENTIFIERS)
    emails: tuple[Identifier, ...] = Field(
        max_length=MAX_ERASURE_IDENTIFIERS,
        description="the respondent's addresses, normalised and lower-cased",
    )
    response_ids: tuple[Identifier, ...] = Field(max_length=MAX_ERASURE_IDENTIFIERS)
    invitation_ids: tuple[Identifier, ...] = Field(max_length=MAX_ERASURE_IDENTIFIERS)
    pseudonym: str = Field(
        min_length=1,
        max_length=100,
        description="what replaces the customer id where a row must keep one "
        "(`erased:<erasure id>`)",
    )
    requested_at: Instant

    def customer_key(self) -> str:
        return f"erasure:{self.erasure_id}"


class ErasureCompletedV1(EventData):
    """A service erased or anonymised what it held about the subject of an erasure. `rows`
    counts the rows touched per table; it names no person."""

    EVENT_TYPE: ClassVar[str] = "dev.closeloop.privacy.erasure_completed.v1"
    TOPIC: ClassVar[Topic] = Topic.PRIVACY
    KEY_DESCRIPTION: ClassVar[str] = "<tenant id>:erasure:<erasure id>"

    erasure_id: uuid.UUID
    service: PrivacyService
    rows: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")],
        Annotated[int, Field(ge=0)],
    ] = Field(max_length=50, description="table -> rows erased or anonymised")
    completed_at: Instant

    def customer_key(self) -> str:
        return f"erasure:{self.erasure_id}"


CONTRACTS: tuple[type[EventData], ...] = (
    ResponseReceivedV1,
    ResponseCorrectedV1,
    ResponseSuspectedV1,
    InvitationSentV1,
    NpsUpdatedV1,
    NpsChangedV1,
    CaseOpenedV1,
    CaseUpdatedV1,
    NoResponseCaseOpenedV1,
    NoResponseCaseUpdatedV1,
    CaseSlaAlertV1,
    CaseResurveyDueV1,
    NotificationSentV1,
    NotificationFailedV1,
    NotificationSentV2,
    NotificationFailedV2,
    ChangeSummaryV1,
    ErasureRequestedV1,
    ErasureCompletedV1,
)
CONTRACTS_BY_TYPE: dict[str, type[EventData]] = {c.EVENT_TYPE: c for c in CONTRACTS}

DataT = TypeVar("DataT", bound=EventData)


def schema_urn(event_type: str) -> str:
    return f"{SCHEMA_URN_PREFIX}{event_type}"


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 envelope around one contract's data (structured mode)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=200, description="unique per source; the dedup key")
    source: str = Field(min_length=1, description="the producing service, e.g. /closeloop/ingest")
    type: str = Field(description="contract name with version, e.g. dev.closeloop.case.opened.v1")
    subject: str | None = None
    time: Instant
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    tenantid: str = Field(pattern=TENANT_ID_PATTERN)
    partitionkey: str = Field(min_length=1)
    # Left out of the JSON when absent (see "Trace context" in the module docstring).
    traceparent: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TRACEPARENT,
        exclude_if=_absent,
        description="W3C Trace Context `traceparent` of the work that emitted the event "
        "(CloudEvents distributed tracing extension); absent when tracing is off",
        examples=["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
    )
    tracestate: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TRACESTATE,
        exclude_if=_absent,
        description="W3C Trace Context `tracestate` (vendor data) beside `traceparent`",
    )
    data: DataT

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    def log_fields(self) -> dict[str, object]:
        """What a log line about this event names: its id and type, its tenant, and the
        response and case it is about when it has them (ids only, never customer text)."""
        fields: dict[str, object] = {
            "event_id": self.id,
            "event_type": self.type,
            "tenant_id": self.tenantid,
        }
        response_id = getattr(self.data, "response_id", None)
        if response_id is not None:
            fields["response_id"] = str(response_id)
        case_id = getattr(self.data, "case_id", None)
        if case_id is not None:
            fields["case_id"] = str(case_id)
        return fields


def new_event(
    data: DataT,
    *,
    tenant_id: str,
    source: str,
    clock: Clock,
    subject: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> CloudEvent[DataT]:
    """Wrap contract data in a fresh envelope (new id, now, partition key from the customer,
    the trace context given, if any)."""
    envelope: CloudEvent[DataT] = CloudEvent[type(data)](  # type: ignore[misc,operator]
        id=str(uuid.uuid4()),
        source=source,
        type=data.EVENT_TYPE,
        subject=subject,
        time=clock.now(),
        dataschema=schema_urn(data.EVENT_TYPE),
        tenantid=tenant_id,
        partitionkey=f"{tenant_id}:{data.customer_key()}",
        traceparent=traceparent,
        tracestate=tracestate,
        data=data,
    )
    return envelope


# The parametrised envelope class of each contract, made once: `CloudEvent[X]` costs a lookup
# that shows in a consumer decoding tens of thousands of events per second.
_ENVELOPES: dict[str, type[CloudEvent[Any]]] = {
    c.EVENT_TYPE: CloudEvent[c]  # type: ignore[valid-type]
    for c in CONTRACTS
}


class UndecodableEvent(ValueError):
    """The bytes are not a valid event of a known contract: a poison message."""


class UnknownEventType(ValueError):
    """A well-formed event of a type this build does not know (e.g. a newer version)."""


# Our own producers write `type` fourth (after specversion, id and source): the fast path reads it
# from there and lets pydantic parse and validate the whole value in one pass. Whatever the guess,
# the result is validated against the contract of the type it really has.
_TYPE_GUESS = re.compile(rb'"type":\s*"([A-Za-z0-9._-]{1,200})"')


def decode_event(raw: bytes) -> CloudEvent[Any]:
    """Parse and validate a structured-mode record value against its contract."""
    nul_possible = may_hold_nul(raw)
    guess = _TYPE_GUESS.search(raw, 0, 2000)
    guessed_type = guess.group(1).decode() if guess else ""
    guessed_class = _ENVELOPES.get(guessed_type)
    if guessed_class is not None and not nul_possible:
        try:
            event = guessed_class.model_validate_json(raw)
        except (ValidationError, RecursionError):
            pass  # the slow path below says what is wrong
        else:
            if event.type == guessed_type:
                return event
    try:
        envelope = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and integers too long to convert; RecursionError,
        # nesting too deep. All are poison, never a reason to stop consuming.
        raise UndecodableEvent(f"not JSON: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
        raise UndecodableEvent("not a CloudEvent: no string `type` attribute")
    envelope_class = _ENVELOPES.get(envelope["type"])
    if envelope_class is None:
        raise UnknownEventType(envelope["type"])
    if nul_possible and (where := nul_locations(envelope)):
        fields = ", ".join(".".join(str(part) for part in at) for at in where)
        raise UndecodableEvent(f"NUL character (U+0000) in {fields.replace(chr(0), '?')}")
    try:
        return envelope_class.model_validate(envelope)
    except (ValidationError, RecursionError) as exc:
        raise UndecodableEvent(f"invalid {envelope['type']}: {exc}") from exc
