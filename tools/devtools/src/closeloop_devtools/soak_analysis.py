"""The soak's arithmetic: latency windows, memory slopes and the verdicts, over plain records.

Pure functions (no I/O) over what `make soak` recorded: one `RequestRecord` per request (and per
end-to-end probe), one `Sample` per service and measure every few seconds. The verdicts are
computed, never eyeballed, against the `Thresholds` the report states:
- memory flat: over the last two-thirds of the load, each service's RSS has a least-squares slope
  below `rss_slope_mib_per_hour` and a spread (max - min) below `rss_spread_mib`; judged only
  when that span is at least `memory_min_span_s` long (a short run's start-up growth is no leak);
- p99 stable: per operation, the median of the per-window p99s of the last third is within
  `p99_factor` (or `p99_slack_ms`, whichever allows more) of the first third's, the warm-up
  left out; operations with too few requests in a third are not judged, nor is a run shorter
  than `stability_min_run_s` (a few minutes' windows say little about drift);
- lag bounded: each consumer group's lag (summed over topics and partitions) stays below
  `max_lag_records` and is 0 at the end, and each outbox's oldest pending age stays below
  `max_outbox_age_s` and is 0 at the end;
- no errors: no request outside its expected answers, no ERROR/CRITICAL/Traceback log line.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from closeloop_devtools.bench import percentile

Outcome = Literal["ok", "expected", "error"]
Status = Literal["pass", "fail", "not judged"]
E2E_OP = "e2e_case_opened"  # accept of a detractor -> its case opened (a probe, not a request)
RSS = "rss_mib"
OUTBOX_AGE = "outbox_age_s"
LOG_ERRORS = "log_errors"
LOG_WARNINGS = "log_warnings"
CPU = "cpu_s"  # CPU seconds (user + system) used so far
LOAD = "load1"  # the machine's 1-minute load average (service `machine`): neighbours show here
MACHINE = "machine"
LAG_PREFIX = "lag:"  # measure `lag:<group>`: that group's records not handled yet
NOT_SENT = -1  # the status of a request not sent: too many were in flight (the rate is not held)
UNREADABLE = -2  # the status of an answer the load could not read (not the documented shape)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    at: float  # seconds from the start of the load at which the request was due
    op: str
    status: int  # HTTP status; 0 when there was no answer (timeout, refused), NOT_SENT
    outcome: Outcome  # expected: an answer the API defines for a race (412, 409)
    latency_ms: float  # from when it was due (not when it was sent) to the answer


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # seconds from the start of the load
    service: str
    measure: str
    value: float


@dataclass(frozen=True, slots=True)
class Thresholds:
    rss_slope_mib_per_hour: float = 30.0
    rss_spread_mib: float = 64.0
    memory_min_span_s: float = 600.0
    p99_factor: float = 2.0
    p99_slack_ms: float = 10.0
    min_requests_per_third: int = 20
    stability_min_run_s: float = 600.0
    max_lag_records: float = 1000.0
    max_outbox_age_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    op: str
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    status: Status
    detail: str


def window_seconds(duration_s: float) -> float:
    """A minute, or a ninth of a run shorter than nine minutes (three windows per third), 5 s
    at least."""
    return max(5.0, min(60.0, duration_s / 9))


def warmup_seconds(duration_s: float) -> float:
    """The start left out of the latency comparison: a minute, or a tenth of a shorter run."""
    return min(60.0, duration_s / 10)


def windows(records: Iterable[RequestRecord], width_s: float) -> list[Window]:
    """Per operation and window of `width_s` (by due time): requests, errors, p50 and p99."""
    grouped: dict[tuple[float, str], list[RequestRecord]] = defaultdict(list)
    for record in records:
        grouped[(width_s * int(record.at // width_s), record.op)].append(record)
    found = []
    for (start, op), members in sorted(grouped.items()):
        answered = [r.latency_ms for r in members if r.outcome != "error"]
        found.append(
            Window(
                start=start,
                op=op,
                requests=len(members),
                errors=sum(r.outcome == "error" for r in members),
                p50_ms=percentile(answered, 0.5) if answered else float("nan"),
                p99_ms=percentile(answered, 0.99) if answered else float("nan"),
            )
        )
    return found


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per hour (0 for fewer than 2)."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return 3600 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def series(samples: Iterable[Sample], service: str, measure: str) -> list[tuple[float, float]]:
    return sorted((s.at, s.value) for s in samples if s.service == service and s.measure == measure)


def memory_verdict(
    samples: Sequence[Sample], services: Sequence[str], duration_s: float, limits: Thresholds
) -> Verdict:
    span = 2 * duration_s / 3
    judged_from = duration_s - span
    details, failed = [], []
    for service in services:
        points = [
            (t, v) for t, v in series(samples, service, RSS) if judged_from <= t <= duration_s
        ]
        if not points:
            failed.append(service)
            details.append(f"{service}: no RSS sample")
            continue
        slope = slope_per_hour(points)
        values = [v for _, v in points]
        spread = max(values) - min(values)
        if slope > limits.rss_slope_mib_per_hour or spread > limits.rss_spread_mib:
            failed.append(service)
        details.append(f"{service} {slope:+.1f} MiB/h, spread {spread:.1f} MiB")
    detail = (
        f"RSS over the last two-thirds ({span / 60:.1f} min): "
        + "; ".join(details)
        + f" (limits {limits.rss_slope_mib_per_hour:g} MiB/h, {limits.rss_spread_mib:g} MiB)"
    )
    if span < limits.memory_min_span_s:
        return Verdict(
            "memory flat",
            "not judged",
            f"{detail}; judged from a span of {limits.memory_min_span_s / 60:.0f} min "
            f"(a run of {1.5 * limits.memory_min_span_s / 60:.0f} min or more)",
        )
    return Verdict("memory flat", "fail" if failed else "pass", detail)


@dataclass(frozen=True, slots=True)
class Stability:
    op: str
    first_p99_ms: float  # median of the first third's per-window p99s
    last_p99_ms: float
    judged: bool
    stable: bool


def stability(
    found: Sequence[Window], duration_s: float, limits: Thresholds
) -> dict[str, Stability]:
    """Per operation, the first and last thirds (after the warm-up) compared."""
    warmup = warmup_seconds(duration_s)
    third = (duration_s - warmup) / 3
    by_op: dict[str, list[Window]] = defaultdict(list)
    for w in found:
        by_op[w.op].append(w)
    result = {}
    for op, ws in sorted(by_op.items()):
        first = [w for w in ws if warmup <= w.start < warmup + third]
        last = [w for w in ws if duration_s - third <= w.start < duration_s]
        firsts = [w.p99_ms for w in first if not math.isnan(w.p99_ms)]
        lasts = [w.p99_ms for w in last if not math.isnan(w.p99_ms)]
        judged = (
            bool(firsts and lasts)
            and sum(w.requests for w in first) >= limits.min_requests_per_third
            and sum(w.requests for w in last) >= limits.min_requests_per_third
        )
        first_p99 = statistics.median(firsts) if firsts else float("nan")
        last_p99 = statistics.median(lasts) if lasts else float("nan")
        allowed = max(limits.p99_factor * first_p99, first_p99 + limits.p99_slack_ms)
        result[op] = Stability(op, first_p99, last_p99, judged, judged and last_p99 <= allowed)
    return result


def latency_verdict(
    compared: dict[str, Stability], duration_s: float, limits: Thresholds
) -> Verdict:
    judged = [s for s in compared.values() if s.judged]
    unstable = [s for s in judged if not s.stable]
    rule = (
        f"median per-window p99 of the last third ≤ max({limits.p99_factor:g} x the first "
        f"third's, + {limits.p99_slack_ms:g} ms)"
    )
    if not judged:
        return Verdict("p99 stable", "not judged", f"too few requests per third; {rule}")
    shown = ", ".join(f"{s.op} {s.first_p99_ms:.0f}→{s.last_p99_ms:.0f} ms" for s in unstable)
    detail = f"{len(judged) - len(unstable)} of {len(judged)} operations; {rule}" + (
        f"; unstable: {shown}" if unstable else ""
    )
    if duration_s < limits.stability_min_run_s:
        return Verdict(
            "p99 stable",
            "not judged",
            f"{detail}; judged in a run of {limits.stability_min_run_s / 60:.0f} min or more",
        )
    return Verdict("p99 stable", "fail" if unstable else "pass", detail)


def last_values(samples: Iterable[Sample]) -> dict[tuple[str, str], float]:
    """The latest value of each (service, measure)."""
    latest: dict[tuple[str, str], tuple[float, float]] = {}
    for s in samples:
        key = (s.service, s.measure)
        if key not in latest or s.at >= latest[key][0]:
            latest[key] = (s.at, s.value)
    return {key: value for key, (_, value) in latest.items()}


def maxima(samples: Iterable[Sample]) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for s in samples:
        key = (s.service, s.measure)
        found[key] = max(found.get(key, s.value), s.value)
    return found


def lag_verdict(samples: Sequence[Sample], limits: Thresholds) -> Verdict:
    top, end = maxima(samples), last_values(samples)
    problems = []
    for (service, measure), value in sorted(top.items()):
        if measure.startswith(LAG_PREFIX):
            group = measure.removeprefix(LAG_PREFIX)
            if value > limits.max_lag_records:
                problems.append(f"{group} reached {value:.0f} records")
            if end[(service, measure)] != 0:
                problems.append(f"{group} ended at {end[(service, measure)]:.0f} records")
        elif measure == OUTBOX_AGE:
            if value > limits.max_outbox_age_s:
                problems.append(f"{service} outbox age reached {value:.1f} s")
            if end[(service, measure)] != 0:
                problems.append(f"{service} outbox ended {end[(service, measure)]:.1f} s behind")
    lags = [v for (_, m), v in top.items() if m.startswith(LAG_PREFIX)]
    ages = [v for (_, m), v in top.items() if m == OUTBOX_AGE]
    if not lags:
        return Verdict("lag bounded", "fail", "no consumer lag was sampled")
    detail = (
        f"max consumer lag {max(lags):.0f} records (limit {limits.max_lag_records:g}), max "
        f"outbox age {max(ages, default=0):.1f} s (limit {limits.max_outbox_age_s:g} s), "
        "both 0 at the end"
    )
    if problems:
        return Verdict("lag bounded", "fail", f"{detail}: " + "; ".join(problems))
    return Verdict("lag bounded", "pass", detail)


def _status(status: int) -> str:
    named = {NOT_SENT: "not sent", UNREADABLE: "unreadable answer", 0: "no answer"}
    return named.get(status, str(status))


def errors_verdict(records: Sequence[RequestRecord], samples: Sequence[Sample]) -> Verdict:
    failed: dict[tuple[str, int], int] = defaultdict(int)
    for r in records:
        if r.outcome == "error":
            failed[(r.op, r.status)] += 1
    end = last_values(samples)
    logged = {svc: int(v) for (svc, m), v in sorted(end.items()) if m == LOG_ERRORS and v > 0}
    problems = [f"{n} x {op} {_status(status)}" for (op, status), n in failed.items()]
    problems += [f"{n} error lines in {svc}'s log" for svc, n in logged.items()]
    if problems:
        return Verdict("no errors", "fail", "; ".join(problems))
    return Verdict(
        "no errors",
        "pass",
        f"{len(records)} requests and probes, none answered outside its expected statuses; no "
        "ERROR, CRITICAL or Traceback line in any service's log",
    )


def verdicts(
    records: Sequence[RequestRecord],
    samples: Sequence[Sample],
    services: Sequence[str],
    duration_s: float,
    limits: Thresholds,
) -> list[Verdict]:
    during = [s for s in samples if s.at <= duration_s]
    compared = stability(windows(records, window_seconds(duration_s)), duration_s, limits)
    return [
        memory_verdict(during, services, duration_s, limits),
        latency_verdict(compared, duration_s, limits),
        lag_verdict(samples, limits),
        errors_verdict(records, samples),
    ]


def passed(found: Sequence[Verdict]) -> bool:
    """True when no verdict failed (one not judged does not fail the run)."""
    return all(v.status != "fail" for v in found)
