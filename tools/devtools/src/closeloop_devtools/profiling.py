"""A py-spy profile of a process under benchmark, and where its time went, for the report.

`py_spy(pid, out)` samples the process (`--nonblocking`: it is never paused, so the measured
rate is not slowed by the sampling) into py-spy's collapsed-stack format while the block runs.
`summarise(out)` reads it back: the share of samples by library of the innermost frame (the
code that was running), and the service's functions by inclusive share (the samples they were on
the stack for). Idle time (waiting in the event loop) is not sampled.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# (area, a fragment of the frame's `(path:line)`), first match wins.
AREAS = (
    ("SQLAlchemy", "(sqlalchemy/"),
    ("asyncpg", "(asyncpg/"),
    ("pydantic", "(pydantic"),
    ("aiokafka", "(aiokafka/"),
    ("json", "json"),
    ("the orchestrator's code", "closeloop_orchestrator/"),
    ("the notifier's code", "closeloop_notifier/"),
    ("aiosmtplib", "(aiosmtplib/"),
    ("email (stdlib)", "(email/"),
    ("jinja2", "(jinja2/"),
    ("babel", "(babel/"),
    ("closeloop_common", "closeloop_common/"),
    ("holidays", "(holidays/"),
    ("asyncio/uvloop", "(asyncio/"),
    ("asyncio/uvloop", "(uvloop/"),
)
# Only the service's own functions are listed (`summarise(project=...)`): the consumer's and
# the loop's frames are on nearly every stack. SQLAlchemy's asyncio runs statements in greenlets, whose stacks py-spy
# shows apart from the coroutine that awaits them: the time in a statement is not counted in
# the project function that ran it.
PROJECT = "closeloop_orchestrator/"


@dataclass(frozen=True, slots=True)
class Profile:
    samples: int
    areas: list[tuple[str, float]]  # area, share of samples (innermost frame)
    functions: list[tuple[str, float]]  # project function, inclusive share of samples

    def describe(self, *, areas: int = 6, functions: int = 8) -> tuple[str, str]:
        """(by library, by project function) as report cells."""
        by_area = ", ".join(f"{name} {100 * share:.0f} %" for name, share in self.areas[:areas])
        by_function = "; ".join(
            f"`{name}` {100 * share:.0f} %" for name, share in self.functions[:functions]
        )
        return f"{by_area} ({self.samples:,} samples)", by_function


def py_spy_binary() -> str | None:
    found = shutil.which("py-spy") or str(Path.home() / ".local/bin/py-spy")
    return found if Path(found).exists() else None


@contextmanager
def py_spy(pid: int, out: Path, *, rate: int = 100) -> Iterator[None]:
    """Sample `pid` into `out` (collapsed stacks) while the block runs (nothing without py-spy)."""
    binary = py_spy_binary()
    if binary is None:
        yield
        return
    command = [binary, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking"]
    command += ["--format", "raw", "--output", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _area(frame: str) -> str:
    for name, fragment in AREAS:
        if fragment in frame:
            return name
    return "other"


def _function(frame: str, project: str) -> str | None:
    """`module.function` of a project frame (`name (path/to/module.py:line)`), else None."""
    name, _, where = frame.partition(" (")
    if project not in where:
        return None
    module = where.rpartition(":")[0].removesuffix(".py").rpartition("/")[2]
    return f"{module}.{name}"


def summarise(out: Path, *, project: str = PROJECT) -> Profile | None:
    """The profile in `out`, or None if there is none (no py-spy, or nothing sampled);
    `project`: the path fragment of the service whose functions are listed."""
    if not out.exists():
        return None
    areas: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        areas[_area(frames[-1])] += samples
        for name in {f for f in (_function(frame, project) for frame in frames) if f}:
            functions[name] += samples
    if total == 0:
        return None
    return Profile(
        samples=total,
        areas=[(name, n / total) for name, n in areas.most_common()],
        functions=[(name, n / total) for name, n in functions.most_common()],
    )
