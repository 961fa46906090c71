"""The SLA watcher alone in a process of its own, for `make bench-orchestrator`.

`python -m closeloop_devtools.orchestrator_watcher --steps FILE` runs the orchestrator's
`SlaWatcher` as the service does (its settings, set-up store, runtime clock and worker pool,
the collector tuned as at start), but nothing else: no consumer, outbox relay or gauges, so the
process's CPU time is the watcher's. It prints `ready` once its pool has a connection, and on
SIGTERM stops and writes one line per step to FILE: when the step began, when its transaction
had committed, and how many timers it fired (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from subprocess import PIPE, Popen

import uvloop

from closeloop_common.runtime import ServiceRuntime, tune_garbage_collector
from closeloop_common.tenants import TenantDirectory
from closeloop_orchestrator.adapters.tables import metadata
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.service_layer.setup_store import SetupStore
from closeloop_orchestrator.service_layer.watcher import SlaWatcher


class LoggedWatcher(SlaWatcher):
    """The watcher, noting when each step began and committed."""

    steps: list[tuple[datetime, datetime, int]]

    async def step(self) -> int:
        began = datetime.now(UTC)
        fired = await super().step()
        self.steps.append((began, datetime.now(UTC), fired))
        return fired


async def watch() -> list[tuple[datetime, datetime, int]]:
    """Run the watcher until SIGTERM; its steps."""
    settings = OrchestratorSettings()
    runtime = ServiceRuntime(name="orchestrator", settings=settings, metadata=metadata)
    store = SetupStore(settings, TenantDirectory.load(settings.tenants_file))
    watcher = LoggedWatcher(
        runtime,
        store,
        limit=settings.orchestrator_watch_batch,
        interval=settings.orchestrator_watch_interval_seconds,
        tick=settings.orchestrator_watch_tick_seconds,
    )
    watcher.steps = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await watcher.until_next_due()  # the pool's first connection, before `ready`
        tune_garbage_collector()
        print("ready", flush=True)
        running = asyncio.create_task(watcher.run())
        await stop.wait()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    finally:
        await runtime.worker_engine.dispose()
        await runtime.engine.dispose()
    return watcher.steps


@contextmanager
def watcher_process(env: dict[str, str], *, steps: Path, log: Path) -> Iterator[Popen[bytes]]:
    """`orchestrator_watcher` as a process; stopped (SIGTERM: it writes `steps`) at the end."""
    command = [sys.executable, "-m", "closeloop_devtools.orchestrator_watcher", "--steps"]
    with log.open("ab") as out:
        proc = subprocess.Popen([*command, str(steps)], env=env, stdout=PIPE, stderr=out)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def until_ready(proc: Popen[bytes]) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    if line.strip() != b"ready":
        raise RuntimeError(f"the watcher did not start (exit code {proc.poll()})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-orchestrator-watcher", description=__doc__)
    parser.add_argument("--steps", type=Path, required=True, help="where the steps are written")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        steps = runner.run(watch())
    args.steps.write_text(
        "".join(
            json.dumps([began.isoformat(), committed.isoformat(), fired]) + "\n"
            for began, committed, fired in steps
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
