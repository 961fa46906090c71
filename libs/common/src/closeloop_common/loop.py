"""The loop behind every background worker (outbox relay, SMTP dispatcher, later SLA watchers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError

from closeloop_common.errors import backoff

log = logging.getLogger(__name__)


async def wait_for_wake(wake: asyncio.Event, timeout: float) -> None:
    """Sleep until `wake` is set or `timeout` seconds pass, then re-arm it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout)
    wake.clear()


async def repeat(
    step: Callable[[], Awaitable[bool]], *, wake: asyncio.Event, idle: float, name: str
) -> None:
    """Run `step` until cancelled.

    `step` returns True when there may be more work (it runs again at once) and False when it
    found none (the loop sleeps until `wake` is set or `idle` seconds pass). An exception is
    logged and the step retried after a backoff that grows to 30 s while failures last.

    Cancellation (a graceful stop) never cuts a step in half: the step under way is finished
    first, so work like "send this email, then record that it was sent" is not interrupted
    between its side effect and its commit. Steps must therefore be bounded in time.
    """
    failures = 0
    while True:
        running = asyncio.ensure_future(step())
        try:
            more = await asyncio.shield(running)
        except asyncio.CancelledError:
            try:
                await running
            except Exception:
                log.exception(f"{name} failed while stopping")
            raise
        except Exception:
            failures += 1
            delay = min(30.0, 0.25 * 2 ** min(failures, 7))
            log.exception(f"{name} failed; retrying", extra={"retry_in_s": delay})
            await asyncio.sleep(delay)
            continue
        failures = 0
        if not more:
            await wait_for_wake(wake, idle)


async def until_connected(start: Callable[[], Awaitable[None]], *, what: str) -> None:
    """Call `start` until it succeeds, waiting out a broker that cannot be reached yet (a
    service must start, and stay alive, while its broker is down)."""
    attempt = 0
    while True:
        try:
            await start()
            return
        except (KafkaError, OSError) as exc:
            attempt += 1
            delay = backoff(attempt, cap=10.0)
            log.warning(
                f"{what}: cannot reach the broker; retrying",
                extra={"error": repr(exc), "retry_in_s": delay},
            )
            await asyncio.sleep(delay)
