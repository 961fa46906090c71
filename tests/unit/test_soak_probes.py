"""What the soak reads off the services: metrics text, /proc entries, log lines."""

from __future__ import annotations

from pathlib import Path

from closeloop_devtools.soak_probes import (
    LogCounter,
    load_average,
    read_metrics,
    rss_mib,
    severity,
    tree_rss_mib,
    vm_rss_kib,
)

METRICS = """\
# HELP closeloop_consumer_lag_records Records of a partition not yet handled
# TYPE closeloop_consumer_lag_records gauge
closeloop_consumer_lag_records{group="s.scoring",topic="responses",partition="0"} 3.0
closeloop_consumer_lag_records{group="s.scoring",topic="responses",partition="1"} 4.0
closeloop_consumer_lag_records{group="s.scoring-watch",topic="nps",partition="0"} 0.0
# HELP closeloop_outbox_oldest_pending_age_seconds Age of the oldest outbox row
# TYPE closeloop_outbox_oldest_pending_age_seconds gauge
closeloop_outbox_oldest_pending_age_seconds 1.5
# HELP closeloop_http_requests_total Requests
# TYPE closeloop_http_requests_total counter
closeloop_http_requests_total{route="/v1/nps"} 12.0
"""


def test_lag_is_summed_per_group_and_the_outbox_age_read() -> None:
    reading = read_metrics(METRICS)
    assert reading.lag_by_group == {"s.scoring": 7.0, "s.scoring-watch": 0.0}
    assert reading.outbox_age_s == 1.5
    assert read_metrics("").outbox_age_s is None


def status(rss_kib: int | None) -> str:
    lines = ["Name:\tpython", "State:\tS (sleeping)"]
    if rss_kib is not None:
        lines.append(f"VmRSS:\t  {rss_kib} kB")
    return "\n".join(lines) + "\n"


def fake_proc(root: Path, processes: dict[int, tuple[int, int | None]]) -> Path:
    """A /proc of `pid -> (parent pid, VmRSS kiB)`, with a command name holding a space and ')'."""
    for pid, (parent, rss_kib) in processes.items():
        entry = root / str(pid)
        entry.mkdir(parents=True)
        (entry / "stat").write_text(f"{pid} (uv icorn) w) S {parent} 1 1 0 -1\n")
        (entry / "status").write_text(status(rss_kib))
    (root / "self").mkdir()
    (root / "loadavg").write_text("3.25 2.10 1.05 4/512 4242\n")
    return root


def test_rss_counts_the_process_and_every_descendant_only(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {
            10: (1, 1024),
            11: (10, 2048),  # child
            12: (11, 512),  # grandchild
            13: (1, 4096),  # unrelated
            14: (10, None),  # a zombie child: no VmRSS
        },
    )
    assert tree_rss_mib(10, proc=proc) == 3.5
    assert tree_rss_mib(99, proc=proc) == 0.0
    assert rss_mib(10, proc=proc) == 1.0
    assert rss_mib(99, proc=proc) == 0.0
    assert load_average(proc=proc) == 3.25
    assert vm_rss_kib(status(777)) == 777


def test_error_lines_are_told_apart_from_warnings_and_information() -> None:
    assert severity('{"level": "error", "msg": "relay failed"}') == "error"
    assert severity('{"level": "critical", "msg": "x"}') == "error"
    assert severity('{"level": "warning", "msg": "ERROR in a message text"}') == "warning"
    assert severity('{"level": "info", "msg": "started"}') is None
    assert severity("Traceback (most recent call last):") == "error"
    assert severity("2026-12-07 02:00:00 ERROR ingest app: boom") == "error"
    assert severity("2026-12-07 02:00:00 WARNING ingest app: slow") == "warning"
    assert severity("INFO:     Application startup complete.") is None
    assert severity("{not json but ERROR}") == "error"


def test_the_log_counter_reads_only_whole_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "ingest.log"
    counter = LogCounter(log)
    counter.scan()  # no file yet
    log.write_text('{"level": "error", "msg": "a"}\n{"level": "warning", "msg": "b"}\n{"lev')
    counter.scan()
    assert (counter.errors, counter.warnings) == (1, 1)
    with log.open("a") as out:
        out.write('el": "error", "msg": "c"}\nTraceback (most recent call last):\n')
    counter.scan()
    counter.scan()
    assert (counter.errors, counter.warnings) == (3, 1)
    assert counter.examples[1] == '{"level": "error", "msg": "c"}'
