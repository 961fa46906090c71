"""The worker loop: steps run until there is no work, failures back off, a stop finishes the step."""

from __future__ import annotations

import asyncio

import pytest

from closeloop_common.loop import repeat


async def test_a_stop_waits_for_the_step_under_way_to_finish() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def step() -> bool:
        started.set()
        await release.wait()  # e.g. an SMTP server taking its time to accept
        finished.append("recorded")
        return False

    worker = asyncio.create_task(repeat(step, wake=asyncio.Event(), idle=60, name="unit"))
    await started.wait()
    worker.cancel()
    await asyncio.sleep(0)
    assert not worker.done()  # still finishing the step
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await worker
    assert finished == ["recorded"]


async def test_steps_repeat_while_they_report_more_work_then_wait_to_be_woken() -> None:
    calls: list[int] = []
    wake = asyncio.Event()
    idle = asyncio.Event()

    async def step() -> bool:
        calls.append(len(calls))
        more = len(calls) % 3 != 0  # two batches with more work, then none
        if not more:
            idle.set()
        return more

    worker = asyncio.create_task(repeat(step, wake=wake, idle=60, name="unit"))
    await idle.wait()
    assert calls == [0, 1, 2]
    idle.clear()
    wake.set()
    await idle.wait()
    assert calls == [0, 1, 2, 3, 4, 5]
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker


async def test_a_failing_step_is_retried_after_a_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def record_sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", record_sleep)
    outcomes: list[bool | Exception] = [RuntimeError("db down"), RuntimeError("db down"), False]
    done = asyncio.Event()

    async def step() -> bool:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        done.set()
        return outcome

    worker = asyncio.create_task(repeat(step, wake=asyncio.Event(), idle=60, name="unit"))
    await done.wait()
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    assert delays == [0.5, 1.0]
