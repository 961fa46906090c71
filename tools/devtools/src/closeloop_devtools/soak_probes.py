"""What `make soak` reads off the running services: memory, lag and outbox age, log lines.

- `tree_rss_mib`: the resident memory of a process and all its descendants (VmRSS from
  /proc/<pid>/status), so a service that forked a helper is measured whole;
- `read_metrics`: from a service's /metrics text, the consumer lag summed per group
  (`closeloop_consumer_lag_records` over topics and partitions) and the outbox's oldest pending
  age (`closeloop_outbox_oldest_pending_age_seconds`);
- `load_average`: the machine's, since neighbours on it slow the stack down too;
- `LogCounter`: ERROR/CRITICAL/Traceback lines (and warnings) in a service's log, read
  incrementally from where the last call stopped. JSON lines are judged by their `level`, text
  lines by the level word; a `Traceback` line printed outside logging counts as an error.
  (A first, small log check: closeloop_devtools may grow one shared log scanner.)
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

LAG_METRIC = "closeloop_consumer_lag_records"
OUTBOX_AGE_METRIC = "closeloop_outbox_oldest_pending_age_seconds"
_ERROR_WORD = re.compile(r"\b(ERROR|CRITICAL)\b")
_WARNING_WORD = re.compile(r"\bWARNING\b")

Severity = Literal["error", "warning"]


def _children(proc: Path) -> dict[int, list[int]]:
    """Parent pid -> child pids, of every process visible in `proc`."""
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # The command name (field 2) is in parentheses and may hold spaces: split after it.
        parent = int(stat.rpartition(")")[2].split()[1])
        tree[parent].append(int(entry.name))
    return tree


def vm_rss_kib(status: str) -> int:
    """VmRSS (kiB) from the text of /proc/<pid>/status (0 for a kernel thread or a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def rss_mib(pid: int, *, proc: Path = Path("/proc")) -> float:
    """Resident memory of `pid` alone, in MiB (0 when it is gone)."""
    try:
        return vm_rss_kib((proc / str(pid) / "status").read_text()) / 1024
    except OSError:
        return 0.0


def tree_rss_mib(pid: int, *, proc: Path = Path("/proc")) -> float:
    """Resident memory of `pid` and its descendants, in MiB (0 when it is gone)."""
    tree = _children(proc)
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += vm_rss_kib((proc / str(current) / "status").read_text())
        except OSError:
            continue
        pending.extend(tree.get(current, []))
    return total / 1024


def load_average(*, proc: Path = Path("/proc")) -> float:
    """The machine's 1-minute load average."""
    return float((proc / "loadavg").read_text().split()[0])


@dataclass(frozen=True, slots=True)
class MetricsReading:
    lag_by_group: dict[str, float]
    outbox_age_s: float | None  # None: the service has no outbox relay


def read_metrics(text: str) -> MetricsReading:
    lag: dict[str, float] = defaultdict(float)
    age: float | None = None
    for family in text_string_to_metric_families(text):
        if family.name == LAG_METRIC:
            for sample in family.samples:
                lag[sample.labels["group"]] += sample.value
        elif family.name == OUTBOX_AGE_METRIC:
            age = max((s.value for s in family.samples), default=age)
    return MetricsReading(dict(lag), age)


def severity(line: str) -> Severity | None:
    """An error or a warning line, or neither."""
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            level = str(entry.get("level", "")).lower()
            if level in ("error", "critical", "fatal"):
                return "error"
            return "warning" if level == "warning" else None
    if line.startswith("Traceback (most recent call last)") or _ERROR_WORD.search(line):
        return "error"
    return "warning" if _WARNING_WORD.search(line) else None


@dataclass
class LogCounter:
    path: Path
    errors: int = 0
    warnings: int = 0
    examples: list[str] = field(default_factory=list)  # the first few error lines, cut short
    _offset: int = 0

    def scan(self) -> None:
        """Count the whole lines written since the last scan."""
        if not self.path.exists():
            return
        with self.path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next scan
        self._offset += end
        for raw in chunk[:end].splitlines():
            line = raw.decode(errors="replace")
            found = severity(line)
            if found == "error":
                self.errors += 1
                if len(self.examples) < 5:
                    self.examples.append(line[:300])
            elif found == "warning":
                self.warnings += 1
