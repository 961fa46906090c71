"""The Grafana dashboards and provisioning of deploy/grafana: the checked-in JSON is what
`python -m closeloop_devtools.dashboards` generates; every panel is titled, described, has a unit
and reads the provisioned data source; every PromQL expression is valid for promtool and names
only metrics the services export (their Prometheus registries) or recording rules of
deploy/prometheus/rules/."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from closeloop_devtools.dashboards import DASHBOARDS, rendered
from tests.binaries import required_binary
from tests.promql import SCRAPE_SERIES, exported_series, metric_names, recording_rules

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "closeloop.rules.yml"

# What Grafana replaces in a query before Prometheus sees it, for promtool's syntax check.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$tenant": ".*", "$headline": ".*"}


def dashboards() -> dict[str, dict[str, Any]]:
    folder = GRAFANA / "dashboards"
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (p for p in dashboard["panels"] if p["type"] != "row")


def expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every query and every variable's selector."""
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel["targets"]:
                yield f"{name}: {panel['title']} {target['refId']}", target["expr"]
        for variable in dashboard["templating"]["list"]:
            selector = re.fullmatch(r"label_values\((.+), *\w+\)", variable["definition"])
            assert selector is not None, variable["definition"]
            yield f"{name}: ${variable['name']}", selector.group(1)


def test_metric_names_finds_the_selected_metrics_only() -> None:
    expr = (
        'sum by (le) (rate(a_seconds_bucket{route="/v1/x", q=~"$tenant"}[$__rate_interval]))'
        " / on () group_left () rec:ratio:6h offset 5m > 1e3 and bool b_total unless c"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "rec:ratio:6h", "b_total", "c"}


def test_checked_in_dashboards_are_the_generated_ones() -> None:
    assert {name: json.dumps(d, indent=2, ensure_ascii=False) + "\n"
            for name, d in dashboards().items()} == rendered()  # fmt: skip
    assert set(dashboards()) == {"nps-overview.json", "loop-health.json", "pipeline-health.json"}


def test_every_query_names_an_exported_metric_or_a_recording_rule() -> None:
    known = exported_series() | recording_rules(RULES) | SCRAPE_SERIES
    assert {"closeloop_consumer_lag_records", "closeloop_outbox_delay_seconds_bucket"} <= known
    unknown = {
        (where, name)
        for where, expr in expressions()
        for name in metric_names(expr)
        if name not in known
    }
    assert unknown == set()


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for index, (where, expr) in enumerate(expressions()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: a Grafana variable this test does not know"
        rules.append({"record": f"dashboard_query_{index}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    checked = subprocess.run(
        [required_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_is_titled_described_with_a_unit_and_reads_the_provisioned_source(
    name: str,
) -> None:
    dashboard = dashboards()[name]
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == f"closeloop-{name.removesuffix('.json')}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["title"], panel
        assert panel["description"], panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus"
            assert target["expr"]
        x, w = panel["gridPos"]["x"], panel["gridPos"]["w"]
        assert x >= 0, panel["title"]
        assert x + w <= 24, panel["title"]


def test_panels_do_not_overlap() -> None:
    for name, dashboard in dashboards().items():
        cells: dict[tuple[int, int], str] = {}
        for panel in dashboard["panels"]:
            pos = panel["gridPos"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{name}: {panel['title']} over {cells[(x, y)]}"
                    cells[(x, y)] = panel["title"]


def test_headline_queries_follow_the_tenant_and_headline_variables() -> None:
    overview = dashboards()["nps-overview.json"]
    variables = {v["name"]: v for v in overview["templating"]["list"]}
    assert set(variables) == {"tenant", "headline"}
    assert all(v["multi"] and v["includeAll"] for v in variables.values())
    headline_queries = [
        t["expr"]
        for p in panels(overview)
        for t in p["targets"]
        if "closeloop_scoring_headline_" in t["expr"]
    ]
    assert len(headline_queries) == 9
    for expr in headline_queries:
        assert 'tenant=~"$tenant", headline=~"$headline"' in expr


def test_provisioning_loads_the_dashboards_folder_and_the_source_they_name() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert [(s["uid"], s["type"]) for s in sources["datasources"]] == [("prometheus", "prometheus")]
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/closeloop.yml").read_text())
    assert [(p["type"], p["options"]["path"]) for p in providers["providers"]] == [
        ("file", "/var/lib/grafana/dashboards")
    ]
