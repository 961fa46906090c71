"""SLA clocks: the timers a case's deadlines set, and which of them still matter. Pure.

A case has two clocks, each with a deadline counted in its team's time (`business_time`):
- first contact: from opening until the customer is reached;
- resolution: from opening until the case is resolved.
Each running clock sets timers (`clock_timers`):
- a warning when a share of its time is used up (`warn_at`, 75 % by default), for the owner;
- a breach at the deadline;
- escalations after the breach, one per step of the chain (team lead, then manager by default),
  each `after` a further span of the same counted time from the deadline.
A timer is identified by (clock, kind, step), so storing them with that key makes setting them
again a no-op, and a watcher that fires one marks it fired in the same transaction as the event.
Contact stops the first-contact clock and resolution stops the other: their pending timers are
cancelled (`still_due` tells which remain). Reopening a case restarts the resolution clock from
the reopening, with a new deadline of the same length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from closeloop_orchestrator.domain.business_time import Clockwork, warning_at


class ClockName(StrEnum):
    FIRST_CONTACT = "first_contact"
    RESOLUTION = "resolution"
    RESURVEY = "resurvey"  # not an SLA: the day a closed case's customer is asked again


class TimerKind(StrEnum):
    WARNING = "warning"
    BREACH = "breach"
    ESCALATION = "escalation"
    DUE = "due"  # the re-survey's one timer


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """Who is told (`to`: a role such as `team_lead` or `manager`) how long after the breach."""

    to: str
    after: timedelta

    def __post_init__(self) -> None:
        if self.after < timedelta(0):
            raise ValueError("an escalation step comes after the breach, not before")
        if not self.to:
            raise ValueError("an escalation step names whom it goes to")


DEFAULT_CHAIN = (
    EscalationStep("team_lead", timedelta(hours=4)),
    EscalationStep("manager", timedelta(hours=24)),
)


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    warn_at: float = 0.75
    chain: tuple[EscalationStep, ...] = DEFAULT_CHAIN

    def __post_init__(self) -> None:
        if not 0 < self.warn_at < 1:
            raise ValueError(
                f"the warning comes before the deadline: 0 < warn_at < 1, got {self.warn_at}"
            )
        afters = [step.after for step in self.chain]
        if afters != sorted(afters):
            raise ValueError("escalation steps are in the order they fire")


@dataclass(frozen=True, slots=True)
class Timer:
    clock: ClockName
    kind: TimerKind
    step: int  # 0 for warning and breach; 1.. for the escalation steps
    due_at: datetime
    to: str  # `owner`, or the escalation step's role

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.clock.value, self.kind.value, self.step)


def clock_timers(
    clock_name: ClockName,
    *,
    started_at: datetime,
    duration: timedelta,
    clock: Clockwork,
    policy: SlaPolicy = SlaPolicy(),
) -> list[Timer]:
    """Every timer of one clock started at `started_at` with `duration` of counted time, in the
    order they fall due."""
    if duration <= timedelta(0):
        raise ValueError("a deadline is after the start")
    return deadline_timers(
        clock_name,
        started_at=started_at,
        deadline=clock.add(started_at, duration),
        clock=clock,
        policy=policy,
    )


def deadline_timers(
    clock_name: ClockName,
    *,
    started_at: datetime,
    deadline: datetime,
    clock: Clockwork,
    policy: SlaPolicy = SlaPolicy(),
) -> list[Timer]:
    """The timers of a clock that runs from `started_at` to a known `deadline`: the warning when
    `warn_at` of the counted time between them is used (none when the deadline is not after the
    start: a reopened case past its deadline is breached at once), the breach at the deadline,
    and the escalations after it."""
    found = []
    span = clock.elapsed(started_at, deadline)
    if span > timedelta(0):
        warning = warning_at(clock, started_at, span, policy.warn_at)
        found.append(Timer(clock_name, TimerKind.WARNING, 0, warning, "owner"))
    found.append(Timer(clock_name, TimerKind.BREACH, 0, deadline, "owner"))
    for number, step in enumerate(policy.chain, start=1):
        found.append(
            Timer(
                clock_name, TimerKind.ESCALATION, number, clock.add(deadline, step.after), step.to
            )
        )
    return found


def still_due(
    pending: list[Timer],
    *,
    first_contacted_at: datetime | None,
    resolved_at: datetime | None,
) -> list[Timer]:
    """The timers that still matter: a stopped clock's are cancelled (whenever they were due:
    a contact made before a warning fired cancels the warning)."""
    stopped = set()
    if first_contacted_at is not None:
        stopped.add(ClockName.FIRST_CONTACT)
    if resolved_at is not None:
        stopped.add(ClockName.RESOLUTION)
    return [t for t in pending if t.clock not in stopped]


def within_sla(due_at: datetime, done_at: datetime | None, now: datetime) -> bool | None:
    """Whether a clock stopped in time: True/False once stopped or past due, None while it
    still runs before its deadline."""
    if done_at is not None:
        return done_at <= due_at
    return False if now > due_at else None
