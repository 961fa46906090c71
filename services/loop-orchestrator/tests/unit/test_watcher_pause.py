"""The SLA watcher's sleep between steps: until the next timer is due, never less than a tick,
and not at all (the idle interval instead) when nothing is due within the interval."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from closeloop_orchestrator.service_layer.watcher import next_pause


def test_the_next_timer_due_soon_is_waited_for() -> None:
    assert next_pause(0.3, tick=0.1, interval=0.5) == 0.3


def test_timers_due_within_a_tick_wait_for_the_tick_and_fire_together() -> None:
    assert next_pause(0.02, tick=0.1, interval=0.5) == 0.1


def test_an_overdue_timer_another_replica_holds_is_not_polled_in_a_busy_loop() -> None:
    assert next_pause(-3.0, tick=0.1, interval=0.5) == 0.1


def test_nothing_pending_or_due_after_the_interval_leaves_the_idle_wait() -> None:
    assert next_pause(None, tick=0.1, interval=0.5) is None
    assert next_pause(0.5, tick=0.1, interval=0.5) is None


@given(
    until_due=st.none() | st.floats(-1e6, 1e6),
    tick=st.floats(0, 10),
    interval=st.floats(0.001, 60),
)
def test_a_pause_is_never_shorter_than_a_tick_nor_later_than_the_timer_beyond_it(
    until_due: float | None, tick: float, interval: float
) -> None:
    pause = next_pause(until_due, tick=tick, interval=interval)
    if until_due is None or until_due >= interval:
        assert pause is None
    else:
        assert pause is not None
        assert pause >= tick
        assert pause == max(tick, until_due)
