"""Closeloop's Grafana dashboards as code: `python -m closeloop_devtools.dashboards` writes them
to deploy/grafana/dashboards/ (`--check` only compares, for CI). Grafana loads that folder
through deploy/grafana/provisioning/dashboards/closeloop.yml; tests/unit/test_grafana_dashboards.py
checks that the files are up to date and that every query names a metric the services export
or a recording rule of deploy/prometheus/rules/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from closeloop_devtools.dashboards.loop_health import LOOP_HEALTH
from closeloop_devtools.dashboards.nps_overview import NPS_OVERVIEW
from closeloop_devtools.dashboards.panels import Dashboard, render
from closeloop_devtools.dashboards.pipeline_health import PIPELINE_HEALTH

# File name (in deploy/grafana/dashboards/) -> dashboard.
DASHBOARDS: dict[str, Dashboard] = {
    "nps-overview.json": NPS_OVERVIEW,
    "loop-health.json": LOOP_HEALTH,
    "pipeline-health.json": PIPELINE_HEALTH,
}
DEFAULT_FOLDER = Path("deploy/grafana/dashboards")


def rendered() -> dict[str, str]:
    """Each dashboard file's content, as checked in."""
    return {
        name: json.dumps(render(dashboard), indent=2, ensure_ascii=False) + "\n"
        for name, dashboard in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop_devtools.dashboards")
    parser.add_argument("--out", type=Path, default=DEFAULT_FOLDER, help="the dashboards folder")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, content in rendered().items():
        path = args.out / name
        if path.exists() and path.read_text(encoding="utf-8") == content:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path}")
    return 1 if args.check and stale else 0
