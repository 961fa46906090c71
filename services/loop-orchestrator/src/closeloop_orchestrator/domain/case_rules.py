"""A tenant's case rules: which responses open which case, how urgent, and by when. Pure.

A `RuleSet` is an ordered list of `CaseRule`s and the process's defaults. The models refuse
unknown fields (`extra="forbid"`), so the admin API and the configuration file read and write
them as they are. Rules are tried by `order`, then by their place in the list; disabled rules
are skipped; the first rule whose `match` holds decides. When none matches, the defaults decide.

A `match` is a conjunction: every condition given must hold, a condition left out holds for
every response (an empty `match` matches everything). Conditions: categories, a score range,
values per dimension (survey, account, product, region, channel, touchpoint: the response's
value is one of those listed), custom attributes (likewise), a comment present or absent
(blank counts as absent), and being a key account or not.

A rule's `then` either says "no case" (`open_case: false`, and nothing else) or sets some of
the plan; what it leaves out comes from the defaults of the case type it opens:

| case type | priority | channel | first contact | resolution |
| --- | --- | --- | --- | --- |
| detractor | high | phone | 48 h | 168 h |
| passive | normal | email | 48 h | none |
| promoter | low | email | 48 h | none |

A key account's first contact is at most 24 h and its priority at least high, unless the rule
sets them itself (a rule can say 6 h). The case type defaults to the response's category. Hours
count wall time unless `business_hours` is true, in which case they count the team's business
calendar (`business_time`): the caller passes the tenant's calendar as `clock`, and calendars
of particular teams in `team_clocks`, which win for a rule that names that team.

A rule set is validated as a whole: at most 200 rules, names unique (ignoring case), score
ranges within 0..10 and not empty, no rule whose categories its score range excludes, and a
resolution deadline never before the first-contact deadline once the defaults are filled in.

`retroactive.py` runs a rule set over past responses (the dry run and the real run).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from closeloop_common.events import (
    DIMENSIONS,
    AttributeName,
    AttributeValue,
    Category,
    Playbook,
    ResponseCorrectedV1,
    ResponseReceivedV1,
    categorize,
)
from closeloop_orchestrator.domain.assignment import AssignmentStrategy
from closeloop_orchestrator.domain.business_time import Clockwork, WallTime
from closeloop_orchestrator.domain.case_commands import ContactChannel, Priority, Retype
from closeloop_orchestrator.domain.rules import PLAYBOOKS, case_id_for

MAX_RULES: Final = 200
MAX_FIRST_CONTACT_HOURS: Final = 24 * 30
MAX_RESOLUTION_HOURS: Final = 24 * 365
PRIORITY_ORDER: Final = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)

MatchDimension = Literal["survey", "account", "product", "region", "channel", "touchpoint"]
"""The dimensions a rule matches on: every segment dimension but `overall`."""
if set(get_args(MatchDimension)) != set(DIMENSIONS) - {"overall"}:
    raise TypeError("MatchDimension must be the segment dimensions but 'overall'")

RuleName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,79}$")
]
MatchValue = Annotated[str, StringConstraints(min_length=1, max_length=200)]
TeamId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
FirstContactHours = Annotated[float, Field(gt=0, le=MAX_FIRST_CONTACT_HOURS)]
ResolutionHours = Annotated[float, Field(gt=0, le=MAX_RESOLUTION_HOURS)]
Answer = ResponseReceivedV1 | ResponseCorrectedV1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Model):
    """Conditions that must all hold; one left out (None, empty) holds for everything."""

    categories: tuple[Category, ...] | None = Field(None, min_length=1)
    score_min: int | None = Field(None, ge=0, le=10)
    score_max: int | None = Field(None, ge=0, le=10)
    segments: dict[MatchDimension, tuple[MatchValue, ...]] = Field(default_factory=dict)
    attributes: dict[AttributeName, tuple[AttributeValue, ...]] = Field(default_factory=dict)
    comment: bool | None = Field(None, description="true: a comment is present; false: absent")
    key_account: bool | None = None

    @model_validator(mode="after")
    def _sane(self) -> Match:
        low, high = self.score_min or 0, 10 if self.score_max is None else self.score_max
        if low > high:
            raise ValueError(f"score_min {low} is above score_max {high}")
        if self.categories is not None:
            reachable = {categorize(score) for score in range(low, high + 1)}
            if not reachable & set(self.categories):
                wanted = ", ".join(sorted(self.categories))
                raise ValueError(f"no score in {low}..{high} is a {wanted}: the rule never matches")
        for name, values in (*self.segments.items(), *self.attributes.items()):
            if not values:
                raise ValueError(f"{name}: list at least one value (leave it out to match any)")
        return self

    def categories_possible(self) -> frozenset[Category]:
        """The categories a response this matches can have."""
        low, high = self.score_min or 0, 10 if self.score_max is None else self.score_max
        reachable = {categorize(score) for score in range(low, high + 1)}
        return frozenset(reachable & set(self.categories or Category))

    def holds(self, response: Answer, *, key_account: bool) -> bool:
        if self.categories is not None and response.category not in self.categories:
            return False
        if self.score_min is not None and response.score < self.score_min:
            return False
        if self.score_max is not None and response.score > self.score_max:
            return False
        for dimension, values in self.segments.items():
            if _dimension_value(response, dimension) not in values:
                return False
        for name, values in self.attributes.items():
            if response.attributes.get(name) not in values:
                return False
        has_comment = bool(response.comment and response.comment.strip())
        if self.comment is not None and self.comment != has_comment:
            return False
        return self.key_account is None or self.key_account == key_account


def _dimension_value(response: Answer, dimension: MatchDimension) -> str | None:
    if dimension == "survey":
        return response.survey_id
    if dimension == "account":
        return response.account_id
    value: str | None = getattr(response.segments, dimension)
    return value


class Then(_Model):
    """What a matching rule decides; None takes the default of the case type."""

    open_case: bool = True
    case_type: Category | None = None
    priority: Priority | None = None
    channel: ContactChannel | None = None
    first_contact_hours: FirstContactHours | None = None
    resolution_hours: ResolutionHours | None = None
    business_hours: bool | None = None
    assignment: tuple[AssignmentStrategy, ...] | None = Field(None, min_length=1, max_length=4)
    team_id: TeamId | None = None

    @model_validator(mode="after")
    def _sane(self) -> Then:
        if not self.open_case:
            chosen = sorted(
                name for name in self.model_fields_set - {"open_case"} if getattr(self, name)
            )
            if chosen:
                raise ValueError(f"a rule that opens no case sets nothing else, got {chosen}")
        if self.assignment is not None and len(set(self.assignment)) != len(self.assignment):
            raise ValueError("an assignment strategy is listed once")
        return self


class CaseRule(_Model):
    name: RuleName
    enabled: bool = True
    order: int = Field(0, ge=-1_000_000, le=1_000_000, description="lower is tried first")
    match: Match = Match()
    then: Then = Then()


class TypeDefaults(_Model):
    priority: Priority
    channel: ContactChannel
    first_contact_hours: FirstContactHours = 48
    resolution_hours: ResolutionHours | None = None
    business_hours: bool = False

    @model_validator(mode="after")
    def _sane(self) -> TypeDefaults:
        if self.resolution_hours is not None and self.resolution_hours < self.first_contact_hours:
            raise ValueError("the resolution deadline is not before the first-contact deadline")
        return self


class ProcessDefaults(_Model):
    """The process's defaults per case type, for key accounts, and for assignment."""

    detractor: TypeDefaults = TypeDefaults(
        priority=Priority.HIGH, channel=ContactChannel.PHONE, resolution_hours=168
    )
    passive: TypeDefaults = TypeDefaults(priority=Priority.NORMAL, channel=ContactChannel.EMAIL)
    promoter: TypeDefaults = TypeDefaults(priority=Priority.LOW, channel=ContactChannel.EMAIL)
    key_account_first_contact_hours: FirstContactHours = 24
    key_account_priority: Priority = Priority.HIGH
    assignment: tuple[AssignmentStrategy, ...] = Field(
        (AssignmentStrategy.ACCOUNT_OWNER, AssignmentStrategy.ROUND_ROBIN),
        min_length=1,
        max_length=4,
    )
    team_id: TeamId | None = None

    def of(self, case_type: Category) -> TypeDefaults:
        defaults: TypeDefaults = getattr(self, case_type.value)
        return defaults


class RuleSet(_Model):
    """A tenant's rules, first match wins, and the defaults for what they leave out."""

    rules: tuple[CaseRule, ...] = Field((), max_length=MAX_RULES)
    defaults: ProcessDefaults = ProcessDefaults()

    @model_validator(mode="after")
    def _sane(self) -> RuleSet:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name.casefold() in seen:
                raise ValueError(f"rule names are unique: {rule.name!r} is used twice")
            seen.add(rule.name.casefold())
            if rule.then.open_case:
                for case_type in _case_types(rule):
                    for key_account in _key_account_cases(rule):
                        _check_deadlines(rule, self.defaults, case_type, key_account)
        return self

    def in_order(self) -> tuple[CaseRule, ...]:
        """Enabled rules in the order they are tried (sorted() is stable: list order breaks ties)."""
        return tuple(sorted((r for r in self.rules if r.enabled), key=lambda r: r.order))


def _case_types(rule: CaseRule) -> frozenset[Category]:
    if rule.then.case_type is not None:
        return frozenset({rule.then.case_type})
    return rule.match.categories_possible()


def _key_account_cases(rule: CaseRule) -> tuple[bool, ...]:
    wanted = rule.match.key_account
    return (False, True) if wanted is None else (wanted,)


def _check_deadlines(
    rule: CaseRule, defaults: ProcessDefaults, case_type: Category, key_account: bool
) -> None:
    decision = _decide(rule.then, defaults, case_type=case_type, key_account=key_account)
    resolution = decision.resolution_within
    if resolution is not None and resolution < decision.first_contact_within:
        raise ValueError(
            f"rule {rule.name!r}: a {case_type} case{' of a key account' * key_account} would be "
            f"due for resolution ({resolution}) before its first contact "
            f"({decision.first_contact_within})"
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules decide for a response, before any clock: the durations, not the instants."""

    rule: str | None  # None: the defaults decided
    case_type: Category
    playbook: Playbook
    priority: Priority
    channel: ContactChannel
    key_account: bool
    first_contact_within: timedelta
    resolution_within: timedelta | None
    business_hours: bool
    assignment: tuple[AssignmentStrategy, ...]
    team_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class CasePlan:
    """A decision with its deadlines, for one case opened at `opened_at`."""

    case_id: uuid.UUID
    decision: Decision
    opened_at: datetime
    first_contact_due_at: datetime
    resolution_due_at: datetime | None

    def retype(self, note: str | None = None) -> Retype:
        """The command that brings an open case to this plan (after a correction)."""
        return Retype(
            playbook=self.decision.playbook,
            priority=self.decision.priority,
            first_contact_due_at=self.first_contact_due_at,
            resolution_due_at=self.resolution_due_at,
            note=note,
        )


def decide(ruleset: RuleSet, response: Answer, *, key_accounts: Collection[str]) -> Decision | None:
    """The first enabled rule that matches decides (None: it opens no case); else the defaults."""
    key_account = response.account_id is not None and response.account_id in key_accounts
    for rule in ruleset.in_order():
        if rule.match.holds(response, key_account=key_account):
            if not rule.then.open_case:
                return None
            case_type = rule.then.case_type or response.category
            decision = _decide(rule.then, ruleset.defaults, case_type, key_account)
            return _named(decision, rule.name, f"rule {rule.name!r} matched")
    decision = _decide(Then(), ruleset.defaults, response.category, key_account)
    return _named(decision, None, f"no rule matched: the defaults for a {response.category}")


def evaluate(
    ruleset: RuleSet,
    response: Answer,
    *,
    tenant_id: str,
    key_accounts: Collection[str],
    opened_at: datetime,
    clock: Clockwork,
    team_clocks: Mapping[str, Clockwork] | None = None,
) -> CasePlan | None:
    """The plan of the case a response opens at `opened_at`, or None when the rules say none.
    Business-hour deadlines count `clock` (or the rule's team's own calendar), others wall time."""
    decision = decide(ruleset, response, key_accounts=key_accounts)
    if decision is None:
        return None
    counting: Clockwork = WallTime()
    if decision.business_hours:
        own = (team_clocks or {}).get(decision.team_id or "")
        counting = own if own is not None else clock
    resolution = decision.resolution_within
    return CasePlan(
        case_id=case_id_for(tenant_id=tenant_id, response_id=response.response_id),
        decision=decision,
        opened_at=opened_at,
        first_contact_due_at=counting.add(opened_at, decision.first_contact_within),
        resolution_due_at=None if resolution is None else counting.add(opened_at, resolution),
    )


def _decide(
    then: Then, defaults: ProcessDefaults, case_type: Category, key_account: bool
) -> Decision:
    base = defaults.of(case_type)
    first_contact = then.first_contact_hours
    if first_contact is None:
        first_contact = base.first_contact_hours
        if key_account:
            first_contact = min(first_contact, defaults.key_account_first_contact_hours)
    priority = then.priority
    if priority is None:
        priority = base.priority
        if key_account:
            priority = max(priority, defaults.key_account_priority, key=PRIORITY_ORDER.index)
    resolution = then.resolution_hours or base.resolution_hours
    return Decision(
        rule=None,
        case_type=case_type,
        playbook=PLAYBOOKS[case_type],
        priority=priority,
        channel=then.channel or base.channel,
        key_account=key_account,
        first_contact_within=timedelta(hours=first_contact),
        resolution_within=None if resolution is None else timedelta(hours=resolution),
        business_hours=base.business_hours if then.business_hours is None else then.business_hours,
        assignment=then.assignment or defaults.assignment,
        team_id=then.team_id or defaults.team_id,
        reason="",
    )


def _named(decision: Decision, rule: str | None, reason: str) -> Decision:
    key = "; a key account" if decision.key_account else ""
    return replace(decision, rule=rule, reason=reason + key)
