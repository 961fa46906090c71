"""A case's lifecycle: what each command does to a case, and where it is refused. Pure.

`apply(case, command, *, expected_version, at, actor)` either refuses or returns the next state
and the `Transition` that describes it; the service stores the state, appends the transition to
the case's history and publishes it, all in one transaction. Nothing here reads a clock or a table.

Statuses:
- `open`: not worked on yet; assigned to an owner, or waiting in its team's queue (no owner;
  which team is the rules' business, not the lifecycle's).
- `in_progress`: claimed; its owner works on it.
- `contacted`: the customer was reached. It stops the first-contact clock.
- `resolved`: an outcome is recorded. It stops the resolution clock.
- `closed`: done; may schedule a re-survey.

Commands and where they are accepted (anything else is an `InvalidTransition` naming both):

| command | from | to |
| --- | --- | --- |
| Claim | open (unowned, or assigned to the claimant); contacted when unowned | in_progress; contacted stays |
| Reassign | open, in_progress, contacted | in_progress -> open (the new owner has not claimed it); others stay |
| LogContact | in_progress, contacted | `reached` -> contacted; other outcomes stay |
| AddRootCauses | any but closed | unchanged |
| Resolve | in_progress, contacted | resolved |
| Close | resolved | closed |
| Reopen | resolved, closed | in_progress (open when unowned) |
| Retype | open, in_progress, contacted | unchanged |

Decisions, and why:
- Every status change needs a note (what was done, what was agreed; at most 4,000 characters)
  except Claim: claiming only says "mine now", and the record already says who and when. A
  reassignment and a reached contact need one too, so the next person knows what happened.
  Notes, tags and re-survey delays are checked when a command is made (`case_commands`,
  `InvalidCommand`), as they depend on nothing else; `apply` judges a command against the case.
- Claim takes an unowned case or confirms one's own assignment; taking a case assigned to someone
  else is a Reassign, which needs a note. A contacted case sent back to the queue is claimed again
  without going back to in_progress: the customer was reached.
- Resolve is refused on an `open` case: an outcome is recorded by the person accountable for it,
  and claiming first costs one call. Outcomes that say the customer was spoken to (`solved`,
  `compensated`, `explained`) need a reached contact; `customer_unreachable` needs at least one
  logged attempt; `not_solvable` needs neither. A customer who `refused` to talk is not reached
  (the first-contact clock keeps running) until the case is resolved, which stops both clocks.
- Reopen clears the resolution, `resolved_at`, `closed_at` and a scheduled re-survey, and keeps
  `first_contacted_at`, the contact count and the root causes: the history happened. The
  resolution clock runs again, against `Reopen.resolution_due_at` when given (else the old deadline,
  most likely breached already, which is the truth).
- A command that would change nothing (a second claim by the owner, tags the case already has, a
  retype to the same plan) is refused with `NothingToChange`, a kind of `InvalidTransition`, so
  each accepted command raises the version by exactly one and each transition says something.
- Retype carries the plan of a corrected response (playbook, priority, deadlines); it is refused
  once the case is resolved or closed, where the service decides what a correction means.
- A version conflict is checked before anything else: a client with a stale copy must reload
  whatever it sent.
- Root-cause tags are normalised (trimmed, lower-case, inner whitespace as one space), 1..50
  letters, digits, `-`, `_` or spaces, at most 20 per case (`case_commands.normalise_tag`).
- Who may act for whom (may a lead claim for an agent?) is the service's authorisation, not a
  state rule: the lifecycle records the actor and the owner separately.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from closeloop_common.events import Playbook
from closeloop_orchestrator.domain.case_commands import (
    MAX_ROOT_CAUSES,
    AddRootCauses,
    Claim,
    Close,
    Command,
    ContactOutcome,
    InvalidCommand,
    LifecycleError,
    LogContact,
    Priority,
    Reassign,
    Reopen,
    ResolutionOutcome,
    Resolve,
    Retype,
    check_owner,
)


class Outreach(StrEnum):
    """The playbook of a case without an answer (`domain/silence.py`)."""

    ACCOUNT_OUTREACH = "account_outreach"


CasePlaybook = Playbook | Outreach
"""What a case's follow-up is for: an answer's playbook, or reaching out to a silent contact."""


def playbook_of(value: str) -> CasePlaybook:
    return Outreach(value) if value == Outreach.ACCOUNT_OUTREACH else Playbook(value)


class CaseStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    CONTACTED = "contacted"
    RESOLVED = "resolved"
    CLOSED = "closed"


ACTIVE: Final = frozenset({CaseStatus.OPEN, CaseStatus.IN_PROGRESS, CaseStatus.CONTACTED})


# Outcomes that say the customer was spoken to.
NEEDS_REACHED_CUSTOMER: Final = frozenset(
    {ResolutionOutcome.SOLVED, ResolutionOutcome.COMPENSATED, ResolutionOutcome.EXPLAINED}
)


class TransitionKind(StrEnum):
    OPENED = "opened"
    CLAIMED = "claimed"
    REASSIGNED = "reassigned"
    CONTACT_LOGGED = "contact_logged"
    ROOT_CAUSES_ADDED = "root_causes_added"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
    RETYPED = "retyped"


class InvalidTransition(LifecycleError):
    """A well-formed command the case's current state does not allow."""

    def __init__(self, message: str, *, status: CaseStatus, command: str) -> None:
        super().__init__(f"{command} refused on a case {status.value}: {message}")
        self.status = status
        self.command = command


class NothingToChange(InvalidTransition):
    """The command would leave the case as it is; a caller retrying may treat it as done."""


class VersionConflict(LifecycleError):
    """The caller's copy of the case is stale: someone else changed it first."""

    def __init__(self, *, expected: int, actual: int) -> None:
        super().__init__(f"the case is at version {actual}, not {expected}: reload it and retry")
        self.expected = expected
        self.actual = actual


def _utc(instant: datetime, what: str) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"{what} must be an aware datetime")
    return instant.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """A case's lifecycle state. `version` starts at 1 and grows by one per accepted command."""

    id: uuid.UUID
    tenant_id: str
    playbook: CasePlaybook
    priority: Priority
    owner_id: str | None  # None: waiting in its team's queue
    status: CaseStatus
    version: int
    opened_at: datetime
    first_contact_due_at: datetime
    resolution_due_at: datetime | None
    first_contacted_at: datetime | None = None
    contact_attempts: int = 0
    resolved_at: datetime | None = None
    resolution: ResolutionOutcome | None = None
    closed_at: datetime | None = None
    resurvey_due_at: datetime | None = None
    root_causes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # A state that breaks these was not made by `apply`: refuse it where it is loaded.
        settled = self.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED)
        problems = [
            (self.version < 1, "version starts at 1"),
            (self.contact_attempts < 0, "contact attempts are not negative"),
            (settled != (self.resolved_at is not None), "resolved_at is set iff resolved/closed"),
            (settled != (self.resolution is not None), "resolution is set iff resolved/closed"),
            (
                (self.status == CaseStatus.CLOSED) != (self.closed_at is not None),
                "closed_at is set iff closed",
            ),
            (
                self.resurvey_due_at is not None and self.closed_at is None,
                "a re-survey is due only after closing",
            ),
            (
                self.status == CaseStatus.IN_PROGRESS and self.owner_id is None,
                "in_progress has an owner",
            ),
            (
                self.status == CaseStatus.CONTACTED and self.first_contacted_at is None,
                "contacted has first_contacted_at",
            ),
            (
                self.first_contacted_at is not None and self.contact_attempts < 1,
                "a first contact is an attempt",
            ),
        ]
        broken = [what for failed, what in problems if failed]
        if broken:
            raise ValueError(f"inconsistent case {self.id}: {', '.join(broken)}")


# A transition's details: plain values, so the service can put them in an event as they are.
Detail = str | int | bool | datetime | tuple[str, ...] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """What one accepted command did: a history entry and the event that publishes it."""

    case_id: uuid.UUID
    tenant_id: str
    kind: TransitionKind
    from_status: CaseStatus | None  # None for `opened`
    to_status: CaseStatus
    version: int  # the case's version after it
    actor: str
    at: datetime
    note: str | None
    details: Mapping[str, Detail]


ALLOWED_FROM: Final[Mapping[type[Command], frozenset[CaseStatus]]] = MappingProxyType(
    {
        Claim: frozenset({CaseStatus.OPEN, CaseStatus.CONTACTED}),
        Reassign: ACTIVE,
        LogContact: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.CONTACTED}),
        AddRootCauses: frozenset(CaseStatus) - {CaseStatus.CLOSED},
        Resolve: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.CONTACTED}),
        Close: frozenset({CaseStatus.RESOLVED}),
        Reopen: frozenset({CaseStatus.RESOLVED, CaseStatus.CLOSED}),
        Retype: ACTIVE,
    }
)


def open_case(
    *,
    case_id: uuid.UUID,
    tenant_id: str,
    playbook: CasePlaybook,
    priority: Priority,
    owner_id: str | None,
    first_contact_due_at: datetime,
    resolution_due_at: datetime | None,
    at: datetime,
    actor: str = "system",
) -> tuple[Case, Transition]:
    """A new case at version 1, and its first history entry."""
    case = Case(
        id=case_id,
        tenant_id=tenant_id,
        playbook=playbook,
        priority=priority,
        owner_id=check_owner(owner_id),
        status=CaseStatus.OPEN,
        version=1,
        opened_at=_utc(at, "at"),
        first_contact_due_at=_utc(first_contact_due_at, "first_contact_due_at"),
        resolution_due_at=None
        if resolution_due_at is None
        else _utc(resolution_due_at, "resolution_due_at"),
    )
    details: dict[str, Detail] = {
        "owner_id": owner_id,
        "playbook": playbook.value,
        "priority": priority.value,
        "first_contact_due_at": case.first_contact_due_at,
        "resolution_due_at": case.resolution_due_at,
    }
    return case, Transition(
        case_id=case.id,
        tenant_id=tenant_id,
        kind=TransitionKind.OPENED,
        from_status=None,
        to_status=CaseStatus.OPEN,
        version=1,
        actor=actor,
        at=case.opened_at,
        note=None,
        details=MappingProxyType(details),
    )


@dataclass(frozen=True, slots=True)
class _Change:
    kind: TransitionKind
    fields: dict[str, Any]
    details: dict[str, Detail]


def apply(
    case: Case, command: Command, *, expected_version: int, at: datetime, actor: str
) -> tuple[Case, Transition]:
    """The case after `command`, and the transition to record; or VersionConflict/InvalidTransition."""
    if expected_version != case.version:
        raise VersionConflict(expected=expected_version, actual=case.version)
    if not actor.strip():
        raise InvalidCommand("a transition names its actor")
    at = _utc(at, "at")
    name = type(command).__name__
    if case.status not in ALLOWED_FROM[type(command)]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_FROM[type(command)]))
        raise InvalidTransition(f"allowed only on {allowed}", status=case.status, command=name)
    change = _change(case, command, at, name)
    after = replace(case, version=case.version + 1, **change.fields)
    return after, Transition(
        case_id=case.id,
        tenant_id=case.tenant_id,
        kind=change.kind,
        from_status=case.status,
        to_status=after.status,
        version=after.version,
        actor=actor,
        at=at,
        note=getattr(command, "note", None),
        details=MappingProxyType(change.details),
    )


def _change(case: Case, command: Command, at: datetime, name: str) -> _Change:
    def refuse(message: str) -> InvalidTransition:
        return InvalidTransition(message, status=case.status, command=name)

    def unchanged(message: str) -> NothingToChange:
        return NothingToChange(message, status=case.status, command=name)

    match command:
        case Claim(owner_id=owner):
            if case.owner_id == owner and case.status != CaseStatus.OPEN:
                raise unchanged(f"already {owner}'s")
            if case.owner_id not in (None, owner):
                raise refuse(f"assigned to {case.owner_id}; reassign it with a note")
            claimed = CaseStatus.IN_PROGRESS if case.status == CaseStatus.OPEN else case.status
            return _Change(
                TransitionKind.CLAIMED,
                {"owner_id": owner, "status": claimed},
                {"owner_id": owner, "previous_owner_id": case.owner_id},
            )
        case Reassign(owner_id=owner):
            if case.owner_id == owner:
                raise unchanged(f"already {owner or 'in the queue'}")
            # The new owner has not claimed it yet; a contacted customer stays contacted.
            status = CaseStatus.OPEN if case.status == CaseStatus.IN_PROGRESS else case.status
            return _Change(
                TransitionKind.REASSIGNED,
                {"owner_id": owner, "status": status},
                {"owner_id": owner, "previous_owner_id": case.owner_id},
            )
        case LogContact(channel=channel, outcome=outcome):
            reached = outcome == ContactOutcome.REACHED
            fields: dict[str, Any] = {"contact_attempts": case.contact_attempts + 1}
            if reached:
                fields["status"] = CaseStatus.CONTACTED
                fields["first_contacted_at"] = case.first_contacted_at or at
            return _Change(
                TransitionKind.CONTACT_LOGGED,
                fields,
                {
                    "channel": channel.value,
                    "outcome": outcome.value,
                    "attempt": case.contact_attempts + 1,
                    "first_contact": reached and case.first_contacted_at is None,
                },
            )
        case AddRootCauses(tags=tags):
            added = frozenset(tags) - case.root_causes
            if not added:
                raise unchanged("the case already has these root causes")
            together = case.root_causes | added
            if len(together) > MAX_ROOT_CAUSES:
                raise refuse(f"a case has at most {MAX_ROOT_CAUSES} root causes")
            return _Change(
                TransitionKind.ROOT_CAUSES_ADDED,
                {"root_causes": together},
                {"added": tuple(sorted(added)), "root_causes": tuple(sorted(together))},
            )
        case Resolve(outcome=outcome):
            if outcome in NEEDS_REACHED_CUSTOMER and case.first_contacted_at is None:
                raise refuse(f"'{outcome.value}' needs the customer reached first")
            if outcome == ResolutionOutcome.CUSTOMER_UNREACHABLE and case.contact_attempts == 0:
                raise refuse("'customer_unreachable' needs at least one logged contact attempt")
            return _Change(
                TransitionKind.RESOLVED,
                {"status": CaseStatus.RESOLVED, "resolved_at": at, "resolution": outcome},
                {"outcome": outcome.value},
            )
        case Close(resurvey_after_days=days):
            resurvey = None if days is None else at + timedelta(days=days)
            return _Change(
                TransitionKind.CLOSED,
                {"status": CaseStatus.CLOSED, "closed_at": at, "resurvey_due_at": resurvey},
                {"resurvey_due_at": resurvey},
            )
        case Reopen(resolution_due_at=due):
            return _Change(
                TransitionKind.REOPENED,
                {
                    "status": CaseStatus.OPEN if case.owner_id is None else CaseStatus.IN_PROGRESS,
                    "resolved_at": None,
                    "resolution": None,
                    "closed_at": None,
                    "resurvey_due_at": None,
                    "resolution_due_at": due or case.resolution_due_at,
                },
                {
                    "previous_outcome": case.resolution.value if case.resolution else None,
                    "resurvey_cancelled": case.resurvey_due_at is not None,
                    "resolution_due_at": due or case.resolution_due_at,
                },
            )
        case Retype():
            plan: dict[str, CasePlaybook | Priority | datetime | None] = {
                "playbook": command.playbook,
                "priority": command.priority,
                "first_contact_due_at": command.first_contact_due_at,
                "resolution_due_at": command.resolution_due_at,
            }
            changed = {k: v for k, v in plan.items() if getattr(case, k) != v}
            if not changed:
                raise unchanged("the corrected response plans the same case")
            details: dict[str, Detail] = {}
            for key, value in changed.items():
                old = getattr(case, key)
                details[key] = value.value if isinstance(value, StrEnum) else value
                details[f"previous_{key}"] = old.value if isinstance(old, StrEnum) else old
            return _Change(TransitionKind.RETYPED, changed, details)
    raise TypeError(f"not a lifecycle command: {command!r}")  # pragma: no cover


def first_contact_clock_running(case: Case) -> bool:
    """Whether the first-contact deadline still counts: nobody reached the customer and the case
    is not settled (a resolution stops both clocks)."""
    return case.first_contacted_at is None and case.status in ACTIVE


def resolution_clock_running(case: Case) -> bool:
    """Whether the resolution deadline still counts: the case has a deadline and no outcome."""
    return case.resolution_due_at is not None and case.status in ACTIVE
