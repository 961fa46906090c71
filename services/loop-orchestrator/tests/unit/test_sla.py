"""SLA timers: when warnings, breaches and escalations fall due, in wall and business time, and
which a contact or a resolution cancels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_orchestrator.domain.business_time import DaysOff, WallTime, calendar_of
from closeloop_orchestrator.domain.sla import (
    ClockName,
    EscalationStep,
    SlaPolicy,
    TimerKind,
    clock_timers,
    still_due,
    within_sla,
)

WARSAW = ZoneInfo("Europe/Warsaw")
H = timedelta(hours=1)
OFFICE = calendar_of(
    time_zone="Europe/Warsaw",
    hours={d: ["08:00-16:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    days_off=DaysOff(country="PL"),
)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=WARSAW)


def test_a_48_hour_wall_clock_warns_at_36_hours_and_escalates_after_the_breach() -> None:
    opened = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    found = clock_timers(
        ClockName.FIRST_CONTACT, started_at=opened, duration=48 * H, clock=WallTime()
    )
    assert [(t.kind, t.step, t.due_at, t.to) for t in found] == [
        (TimerKind.WARNING, 0, opened + 36 * H, "owner"),
        (TimerKind.BREACH, 0, opened + 48 * H, "owner"),
        (TimerKind.ESCALATION, 1, opened + 52 * H, "team_lead"),
        (TimerKind.ESCALATION, 2, opened + 72 * H, "manager"),
    ]
    assert len({t.key for t in found}) == len(found)


def test_six_business_hours_skip_the_night_and_escalations_count_business_time_too() -> None:
    policy = SlaPolicy(chain=(EscalationStep("team_lead", 2 * H),))
    found = clock_timers(
        ClockName.FIRST_CONTACT,
        started_at=local(2026, 11, 20, 14, 0),  # a Friday afternoon
        duration=6 * H,
        clock=OFFICE,
        policy=policy,
    )
    assert [t.due_at for t in found] == [
        local(2026, 11, 23, 10, 30),  # 4.5 h: 2 on Friday, 2.5 on Monday
        local(2026, 11, 23, 12, 0),
        local(2026, 11, 23, 14, 0),
    ]


def test_contact_cancels_the_first_contact_clock_and_resolution_the_other() -> None:
    opened = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    pending = clock_timers(
        ClockName.FIRST_CONTACT, started_at=opened, duration=24 * H, clock=WallTime()
    ) + clock_timers(ClockName.RESOLUTION, started_at=opened, duration=120 * H, clock=WallTime())
    contacted = still_due(pending, first_contacted_at=opened + H, resolved_at=None)
    assert {t.clock for t in contacted} == {ClockName.RESOLUTION}
    assert still_due(pending, first_contacted_at=opened + H, resolved_at=opened + 2 * H) == []
    assert still_due(pending, first_contacted_at=None, resolved_at=None) == pending


def test_within_sla_is_known_once_stopped_or_overdue() -> None:
    due = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert within_sla(due, due - H, due + 5 * H) is True
    assert within_sla(due, due + H, due + 5 * H) is False
    assert within_sla(due, None, due - H) is None
    assert within_sla(due, None, due + H) is False


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="warn_at"):
        SlaPolicy(warn_at=1.0)
    with pytest.raises(ValueError, match="order they fire"):
        SlaPolicy(chain=(EscalationStep("manager", 5 * H), EscalationStep("team_lead", H)))
    with pytest.raises(ValueError, match="after the breach"):
        EscalationStep("team_lead", -H)
    with pytest.raises(ValueError, match="after the start"):
        clock_timers(
            ClockName.RESOLUTION, started_at=local(2026, 1, 5, 9), duration=0 * H, clock=OFFICE
        )


@given(
    st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(hours=200)),
    st.floats(min_value=0.05, max_value=0.95),
)
def test_timers_fall_due_in_order_warning_before_breach(
    opened: datetime, duration: timedelta, warn_at: float
) -> None:
    for clock in (WallTime(), OFFICE):
        found = clock_timers(
            ClockName.FIRST_CONTACT,
            started_at=opened,
            duration=duration,
            clock=clock,
            policy=SlaPolicy(warn_at=warn_at),
        )
        dues = [t.due_at for t in found]
        assert dues == sorted(dues)
        assert opened <= dues[0] <= dues[1]
        assert clock.elapsed(opened, dues[1]) == duration
