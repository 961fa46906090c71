"""The soak's verdicts and report are computed from the records, with known answers."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from closeloop_devtools.soak_analysis import (
    CPU,
    E2E_OP,
    LAG_PREFIX,
    LOG_ERRORS,
    NOT_SENT,
    OUTBOX_AGE,
    RSS,
    UNREADABLE,
    RequestRecord,
    Sample,
    Thresholds,
    errors_verdict,
    lag_verdict,
    latency_verdict,
    memory_verdict,
    passed,
    slope_per_hour,
    stability,
    verdicts,
    window_seconds,
    windows,
)
from closeloop_devtools.soak_report import (
    operation_table,
    service_table,
    write_samples_csv,
    write_windows_csv,
)

LIMITS = Thresholds()
HOUR = 3600.0


def ok(at: float, op: str, ms: float) -> RequestRecord:
    return RequestRecord(at, op, 200, "ok", ms)


def rss(service: str, points: Sequence[tuple[float, float]]) -> list[Sample]:
    return [Sample(t, service, RSS, v) for t, v in points]


def test_slope_is_the_least_squares_line_in_value_per_hour() -> None:
    assert slope_per_hour([(0, 100), (1800, 110), (3600, 120)]) == 20.0
    # (0,0), (60,1), (120,5): mean t 60, mean v 2; slope = (-60·-2 + 0 + 60·3) / 7200 per s.
    assert math.isclose(slope_per_hour([(0, 0), (60, 1), (120, 5)]), 3600 * 300 / 7200)
    assert slope_per_hour([(5, 7)]) == 0.0
    assert slope_per_hour([(5, 7), (5, 9)]) == 0.0


def test_windows_give_per_operation_counts_and_nearest_rank_percentiles() -> None:
    records = [ok(float(i) / 10, "nps", float(i + 1)) for i in range(100)]  # 1..100 ms in 10 s
    records += [ok(12.0, "nps", 500.0), RequestRecord(13.0, "nps", 0, "error", 0.0)]
    found = windows(records, 10.0)
    assert [(w.start, w.requests, w.errors) for w in found] == [(0.0, 100, 0), (10.0, 2, 1)]
    assert (found[0].p50_ms, found[0].p99_ms) == (51.0, 99.0)  # ranks round(0.5·99), round(0.99·99)
    assert (found[1].p50_ms, found[1].p99_ms) == (500.0, 500.0)  # the error has no latency


def test_window_and_warmup_lengths_follow_the_run() -> None:
    assert window_seconds(1800) == 60.0
    assert window_seconds(180) == 20.0
    assert window_seconds(30) == 5.0


def test_growing_memory_fails_and_flat_memory_passes_a_long_run() -> None:
    duration = 1800.0
    flat = rss("scoring", [(t, 300 + (t % 20) / 10) for t in range(0, 1801, 10)])
    leaking = rss("ingest", [(t, 120 + 60 * t / HOUR) for t in range(0, 1801, 10)])  # 60 MiB/h
    verdict = memory_verdict([*flat, *leaking], ["scoring", "ingest"], duration, LIMITS)
    assert verdict.status == "fail"
    assert "ingest +60.0 MiB/h" in verdict.detail
    assert memory_verdict(flat, ["scoring"], duration, LIMITS).status == "pass"


def test_start_up_growth_before_the_last_two_thirds_is_not_judged_as_a_leak() -> None:
    points = [(t, 100.0 if t >= 600 else 50 + t / 12) for t in range(0, 1801, 10)]
    assert memory_verdict(rss("notifier", points), ["notifier"], 1800, LIMITS).status == "pass"


def test_a_short_run_reports_memory_without_judging_it() -> None:
    leaking = rss("ingest", [(t, 100 + t) for t in range(0, 181, 10)])
    verdict = memory_verdict(leaking, ["ingest"], 180, LIMITS)
    assert verdict.status == "not judged"
    assert "+3600.0 MiB/h" in verdict.detail


def test_a_service_without_samples_fails_the_memory_verdict() -> None:
    verdict = memory_verdict(rss("ingest", [(900, 1)]), ["ingest", "scoring"], 1800, LIMITS)
    assert verdict.status == "fail"
    assert "scoring: no RSS sample" in verdict.detail


def steady(op: str, first_ms: float, last_ms: float, duration: float = 1800) -> list[RequestRecord]:
    """One request a second; latency `first_ms` until the last third, then `last_ms`."""
    return [
        ok(float(t), op, first_ms if t < duration * 2 / 3 else last_ms)
        for t in range(int(duration))
    ]


def test_p99_doubling_beyond_the_slack_is_unstable() -> None:
    records = steady("nps", 40, 81) + steady("webhook", 40, 80) + steady("cases_list", 3, 13)
    compared = stability(windows(records, 60), 1800, LIMITS)
    assert (compared["nps"].first_p99_ms, compared["nps"].last_p99_ms) == (40, 81)
    assert not compared["nps"].stable
    assert compared["webhook"].stable  # exactly twice
    assert compared["cases_list"].stable  # +10 ms: within the slack
    verdict = latency_verdict(compared, 1800, LIMITS)
    assert verdict.status == "fail"
    assert "2 of 3 operations" in verdict.detail
    assert "nps 40→81 ms" in verdict.detail


def test_the_warm_up_and_one_slow_minute_do_not_decide_stability() -> None:
    records = [ok(float(t), "nps", 900 if t < 60 or 1700 <= t < 1760 else 20) for t in range(1800)]
    compared = stability(windows(records, 60), 1800, LIMITS)
    assert (compared["nps"].first_p99_ms, compared["nps"].last_p99_ms) == (20, 20)
    assert latency_verdict(compared, 1800, LIMITS).status == "pass"


def test_a_short_run_reports_stability_without_judging_it() -> None:
    records = steady("nps", 10, 500, 300)
    compared = stability(windows(records, window_seconds(300)), 300, LIMITS)
    assert not compared["nps"].stable
    verdict = latency_verdict(compared, 300, LIMITS)
    assert verdict.status == "not judged"
    assert "unstable: nps 10→500 ms" in verdict.detail


def test_rare_operations_are_not_judged() -> None:
    records = [ok(float(t), E2E_OP, 100) for t in range(0, 1800, 100)]
    compared = stability(windows(records, 60), 1800, LIMITS)
    assert not compared[E2E_OP].judged
    assert latency_verdict(compared, 1800, LIMITS).status == "not judged"


def lag(at: float, value: float, service: str = "scoring", group: str = "g.scoring") -> Sample:
    return Sample(at, service, LAG_PREFIX + group, value)


def test_lag_must_stay_below_the_bound_and_end_at_zero() -> None:
    drained = [lag(0, 5), lag(10, 900), lag(20, 0), Sample(20, "ingest", OUTBOX_AGE, 0)]
    assert lag_verdict(drained, LIMITS).status == "pass"
    assert "max consumer lag 900 records" in lag_verdict(drained, LIMITS).detail
    too_high = lag_verdict([lag(0, 1001), lag(10, 0)], LIMITS)
    assert (too_high.status, "g.scoring reached 1001 records" in too_high.detail) == ("fail", True)
    stuck = lag_verdict([lag(0, 3), lag(10, 2)], LIMITS)
    assert (stuck.status, "g.scoring ended at 2 records" in stuck.detail) == ("fail", True)
    outbox = lag_verdict([lag(0, 0), Sample(0, "ingest", OUTBOX_AGE, 31)], LIMITS)
    assert outbox.status == "fail"
    assert "ingest outbox age reached 31.0 s" in outbox.detail
    assert lag_verdict([], LIMITS).status == "fail"


def test_unexpected_answers_and_error_log_lines_fail_but_expected_races_do_not() -> None:
    races = [RequestRecord(1, "case_update", 412, "expected", 9), ok(2, "nps", 5)]
    clean = [Sample(10, "ingest", LOG_ERRORS, 0)]
    assert errors_verdict(races, clean).status == "pass"
    failed = errors_verdict(
        [
            *races,
            RequestRecord(3, "webhook", 500, "error", 9),
            RequestRecord(4, "nps", 0, "error", 0),
            RequestRecord(5, "nps", NOT_SENT, "error", 0),
            RequestRecord(6, "case_read", UNREADABLE, "error", 4),
        ],
        [Sample(5, "orchestrator", LOG_ERRORS, 1), Sample(10, "orchestrator", LOG_ERRORS, 2)],
    )
    assert failed.status == "fail"
    assert failed.detail == (
        "1 x webhook 500; 1 x nps no answer; 1 x nps not sent; 1 x case_read unreadable answer; "
        "2 error lines in orchestrator's log"
    )


def test_a_run_passes_when_no_verdict_fails() -> None:
    services = ["ingest"]
    records = steady("nps", 10, 10, 180)
    samples = [*rss("ingest", [(t, 100) for t in range(0, 181, 10)]), lag(0, 1), lag(190, 0)]
    found = verdicts(records, samples, services, 180, LIMITS)
    assert [v.status for v in found] == ["not judged", "not judged", "pass", "pass"]
    assert passed(found)
    assert not passed([*found[:3], errors_verdict([RequestRecord(1, "nps", 503, "error", 1)], [])])


def test_csv_files_hold_every_sample_and_window() -> None:
    out = io.StringIO()
    write_samples_csv(out, [Sample(10.0, "ingest", RSS, 120.5), lag(20.04, 3)])
    assert out.getvalue() == (
        "at_s,service,measure,value\n10.0,ingest,rss_mib,120.5\n20.0,scoring,lag:g.scoring,3\n"
    )
    out = io.StringIO()
    write_windows_csv(out, windows([ok(1, "nps", 12), ok(2, "nps", 30)], 60))
    assert (
        out.getvalue() == "window_start_s,op,requests,errors,p50_ms,p99_ms\n0,nps,2,0,12.0,30.0\n"
    )


def test_tables_show_each_service_and_operation() -> None:
    samples = [
        *rss("ingest", [(0, 100), (60, 110), (120, 120)]),
        Sample(0, "ingest", CPU, 1.0),
        Sample(120, "ingest", CPU, 61.0),
        lag(60, 7, service="ingest", group="g.ingest"),
        Sample(60, "ingest", OUTBOX_AGE, 0.4),
        Sample(120, "ingest", LOG_ERRORS, 0),
    ]
    table = service_table(samples, ["ingest"], 120)
    assert (
        table.splitlines()[-1]
        == "| ingest | 100 / 120 / 120 | +600.0 | 50 | g.ingest 7 | 0.4 | 0 / 0 |"
    )
    records = [
        ok(1, "nps", 10),
        ok(2, "nps", 20),
        RequestRecord(3, "case_update", 412, "expected", 5),
    ]
    ops = operation_table(records, stability(windows(records, 5), 120, LIMITS), 120).splitlines()
    assert ops[2] == "| case_update | 1 | 0.01 | 0 | 1 x 412 | 5 | 5 | — → — (not judged) |"
    assert ops[3].startswith("| nps | 2 | 0.02 | 0 | 0 | 10 | 20 | ")
