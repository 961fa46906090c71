"""Runs the four services as real processes (migrate, then serve) and waits until they are ready.

Used by `make run` (through the demo) and by the end-to-end tests, so both exercise the same
start-up path as production: console scripts, uvicorn, the real broker and database. The services
are those of `closeloop_common.services`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from closeloop_common.services import SERVICES, ServiceDefinition, service

# The notifier's messaging defaults for the demo and the end-to-end tests: customer replies go at
# once, day and night, with no frequency cap (production keeps a human delay, quiet hours and a
# cap: domain/tenant_settings.py).
DEMO_MESSAGING = json.dumps(
    {
        "reply_delay": {"min_minutes": 0, "max_minutes": 0},
        "quiet_hours": None,
        "frequency_cap": None,
    }
)


def _script(spec: ServiceDefinition) -> str:
    return str(Path(sys.executable).parent / spec.script)


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    port_offset: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{service(name).port + self.port_offset}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def migrate(self) -> None:
        """Run every service's migrations, in parallel (each owns its own schema)."""
        running = {
            spec.name: subprocess.Popen(
                [_script(spec), "migrate"],
                env=self._env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for spec in SERVICES
        }
        for name, proc in running.items():
            output, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{name} migrate failed:\n{output.decode()[-4000:]}")

    def start(self, *, timeout: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in SERVICES:
            self._spawn(spec)
        self.wait_ready([s.name for s in SERVICES], timeout)

    def _spawn(self, spec: ServiceDefinition) -> None:
        log = (self.log_dir / f"{spec.name}.log").open("ab")
        self._logs.append(log)
        self.processes[spec.name] = subprocess.Popen(
            [_script(spec), "serve", "--port", str(spec.port + self.port_offset)],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, name: str) -> None:
        """SIGKILL one service: no shutdown hooks run, as in a crash or an OOM kill."""
        proc = self.processes[name]
        proc.kill()
        proc.wait()

    def restart(self, name: str, *, timeout: float = 60.0) -> None:
        self._spawn(service(name))
        self.wait_ready([name], timeout)

    def wait_ready(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                name = pending[0]
                proc = self.processes.get(name)  # None: started elsewhere (compose)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
                try:
                    if client.get(f"{self.url(name)}/readyz").status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready in {timeout:.0f} s:\n{self.tail(name)}")
                time.sleep(0.2)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()
        self.processes.clear()
        self._logs.clear()
