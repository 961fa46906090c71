"""The Prometheus configuration, alert and recording rules of deploy/prometheus: valid for promtool,
unit-tested by promtool (rules/closeloop.rules.test.yml), and each alert complete: a severity, a
summary, a description and a runbook section that exists."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from closeloop_common.services import SERVICES
from closeloop_devtools.dashboards.pipeline_health import INGEST_HANDLED_OUTCOMES, SERVICE_MATCH
from closeloop_devtools.prometheus import Prometheus
from tests.binaries import required_binary
from tests.promql import SCRAPE_SERIES, exported_series, metric_names, recording_rules

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "closeloop.rules.yml"
RULE_TESTS = PROMETHEUS / "rules" / "closeloop.rules.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def alerts() -> list[dict[str, Any]]:
    return [r for g in load(RULES)["groups"] for r in g["rules"] if "alert" in r]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [required_binary("promtool"), *args], capture_output=True, text=True, timeout=120
    )


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = [r for g in load(RULES)["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_accepts_the_scrape_configuration_which_loads_the_rules_only() -> None:
    checked = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # rules/*.rules.yml: the rules file, not the file of their unit tests.
    assert "SUCCESS: 1 rule files found" in checked.stdout


def test_every_rule_names_an_exported_metric_or_a_recording_rule() -> None:
    known = exported_series() | recording_rules(RULES) | SCRAPE_SERIES
    rules = [r for g in load(RULES)["groups"] for r in g["rules"]]
    named = {name for r in rules for name in metric_names(r["expr"])}
    assert "closeloop_notifier_smtp_unreachable" in named
    assert named - known == set()


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    cases = [case for t in load(RULE_TESTS)["tests"] for case in t.get("alert_rule_test", [])]
    for alert in alerts():
        name = alert["alert"]
        firing = [c for c in cases if c["alertname"] == name and c.get("exp_alerts")]
        quiet = [c for c in cases if c["alertname"] == name and not c.get("exp_alerts")]
        assert firing, f"no test fires {name}"
        assert quiet, f"no test shows {name} staying quiet"


def test_every_alert_has_a_severity_its_texts_and_a_runbook_section() -> None:
    headings = {
        github_anchor(line.removeprefix("## "))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    for alert in alerts():
        name = alert["alert"]
        assert name.startswith("Closeloop"), name
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        annotations = alert["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}"
        assert name.lower() in headings, f"docs/runbook.md has no section ## {name}"


def test_the_rules_and_dashboards_agree_on_services_and_ingest_refusals() -> None:
    rules = RULES.read_text(encoding="utf-8")
    assert f'outcome!~"{INGEST_HANDLED_OUTCOMES}"' in rules
    service_down = next(a for a in alerts() if a["alert"] == "CloseloopServiceDown")
    assert service_down["expr"] == f'up{{service=~"{SERVICE_MATCH}"}} == 0'
    assert SERVICE_MATCH == "ingest|scoring|loop-orchestrator|notifier"


def test_compose_targets_name_every_service_with_its_service_label() -> None:
    groups = json.loads((PROMETHEUS / "targets" / "compose.json").read_text(encoding="utf-8"))
    assert sorted((g["targets"], g["labels"]) for g in groups) == sorted(
        ([f"{s.directory}:{s.port}"], {"service": s.directory}) for s in SERVICES
    )


def test_the_end_to_end_copy_changes_only_targets_intervals_and_the_named_alert(
    tmp_path: Path,
) -> None:
    server = Prometheus(
        binary="prometheus",
        workdir=tmp_path,
        targets={"ingest": "127.0.0.1:18001", "notifier": "127.0.0.1:18004"},
        alert_for={"CloseloopSmtpUnreachable": "2s"},
        shipped=PROMETHEUS,
    )
    config = load(server.write_config())
    assert config["global"] == {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    shipped = load(PROMETHEUS / "prometheus.yml")
    assert config["scrape_configs"] == shipped["scrape_configs"]
    assert config["rule_files"] == shipped["rule_files"]
    copied = load(tmp_path / "rules" / RULES.name)
    expected = load(RULES)
    for group in expected["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "CloseloopSmtpUnreachable":
                assert rule["for"] == "5m"
                rule["for"] = "2s"
    assert copied == expected
    assert json.loads((tmp_path / "targets" / "closeloop.json").read_text()) == [
        {"targets": ["127.0.0.1:18001"], "labels": {"service": "ingest"}},
        {"targets": ["127.0.0.1:18004"], "labels": {"service": "notifier"}},
    ]
    checked = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
