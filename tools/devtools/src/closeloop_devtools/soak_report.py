"""The soak's report: the raw samples and per-window latencies as CSV, the Markdown tables.

Pure functions over `soak_analysis`'s records (the CSV writers take an open text file): the
verdict rows (measure, result, target) for `report.write_report`, a table per service (RSS,
its slope, CPU, lag, outbox age, log lines) and per operation (requests, errors, expected races,
p50/p99 and the thirds compared), and the machine's load average during the run.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TextIO

from closeloop_devtools.bench import percentile
from closeloop_devtools.soak_analysis import (
    CPU,
    LAG_PREFIX,
    LOAD,
    LOG_ERRORS,
    LOG_WARNINGS,
    MACHINE,
    OUTBOX_AGE,
    RSS,
    RequestRecord,
    Sample,
    Stability,
    Verdict,
    Window,
    last_values,
    maxima,
    series,
    slope_per_hour,
)


def write_samples_csv(out: TextIO, samples: Iterable[Sample]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["at_s", "service", "measure", "value"])
    for s in samples:
        writer.writerow([f"{s.at:.1f}", s.service, s.measure, f"{s.value:g}"])


def write_windows_csv(out: TextIO, found: Iterable[Window]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["window_start_s", "op", "requests", "errors", "p50_ms", "p99_ms"])
    for w in found:
        writer.writerow(
            [f"{w.start:g}", w.op, w.requests, w.errors, f"{w.p50_ms:.1f}", f"{w.p99_ms:.1f}"]
        )


def service_table(samples: Sequence[Sample], services: Sequence[str], duration_s: float) -> str:
    """Per service: RSS at the start, the end and its slope, peak lag and outbox age, log lines."""
    during = [s for s in samples if s.at <= duration_s]
    top, end = maxima(samples), last_values(samples)
    lines = [
        "| service | RSS first / last / max (MiB) | RSS slope, last ⅔ (MiB/h) | CPU (% of a core) "
        "| max lag (records) | max outbox age (s) | error / warning log lines |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for service in services:
        rss = series(during, service, RSS)
        judged = [(t, v) for t, v in rss if t >= duration_s / 3]
        lags = {
            m.removeprefix(LAG_PREFIX): v
            for (svc, m), v in top.items()
            if svc == service and m.startswith(LAG_PREFIX)
        }
        lag = ", ".join(f"{g} {v:.0f}" for g, v in sorted(lags.items())) or "—"
        age = top.get((service, OUTBOX_AGE))
        cpu = series(during, service, CPU)
        busy = (
            f"{100 * (cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0]):.0f}"
            if len(cpu) > 1 and cpu[-1][0] > cpu[0][0]
            else "—"
        )
        lines.append(
            f"| {service} | "
            + (f"{rss[0][1]:.0f} / {rss[-1][1]:.0f} / {max(v for _, v in rss):.0f}" if rss else "—")
            + f" | {slope_per_hour(judged):+.1f} | {busy} | {lag} | "
            + ("—" if age is None else f"{age:.1f}")
            + f" | {end.get((service, LOG_ERRORS), 0):.0f} / "
            f"{end.get((service, LOG_WARNINGS), 0):.0f} |"
        )
    return "\n".join(lines)


def machine_line(samples: Sequence[Sample], duration_s: float) -> str:
    """The machine's load average during the load (other work on it shows in the latencies)."""
    loads = [v for t, v in series(samples, MACHINE, LOAD) if t <= duration_s]
    if not loads:
        return "Machine load average: not sampled."
    return (
        f"Machine load average (1 min) during the load: median {statistics.median(loads):.1f}, "
        f"max {max(loads):.1f}."
    )


def operation_table(
    records: Sequence[RequestRecord], compared: dict[str, Stability], duration_s: float
) -> str:
    """Per operation: requests and their rate, errors, expected races, p50/p99 and the thirds."""
    by_op: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in records:
        by_op[r.op].append(r)
    lines = [
        "| operation | requests | per s | errors | expected races | p50 (ms) | p99 (ms) "
        "| p99 first → last third (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for op, members in sorted(by_op.items()):
        answered = [r.latency_ms for r in members if r.outcome != "error"]
        s = compared.get(op)
        thirds = (
            f"{_ms(s.first_p99_ms)} → {_ms(s.last_p99_ms)}"
            + ("" if s.judged else " (not judged)")
            + ("" if s.stable or not s.judged else " **unstable**")
            if s is not None
            else "—"
        )
        lines.append(
            f"| {op} | {len(members)} | {len(members) / duration_s:.2f} "
            f"| {sum(r.outcome == 'error' for r in members)} "
            f"| {_by_status(r for r in members if r.outcome == 'expected')} | "
            + (
                f"{percentile(answered, 0.5):.0f} | {percentile(answered, 0.99):.0f}"
                if answered
                else "— | —"
            )
            + f" | {thirds} |"
        )
    return "\n".join(lines)


def _ms(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0f}"


def _by_status(records: Iterable[RequestRecord]) -> str:
    counted: dict[int, int] = defaultdict(int)
    for r in records:
        counted[r.status] += 1
    return ", ".join(f"{n} x {status}" for status, n in sorted(counted.items())) or "0"


def verdict_rows(found: Sequence[Verdict]) -> list[tuple[str, str, str]]:
    """The report's main table: one (measure, result, target) row per verdict."""
    return [(v.name, v.status.upper(), v.detail) for v in found]
