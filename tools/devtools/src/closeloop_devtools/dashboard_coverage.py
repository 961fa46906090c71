"""Does the demo feed fill every dashboard panel? `make dashboard-coverage` answers with a table.

It starts a real Prometheus (`closeloop_devtools.prometheus`: the shipped configuration and
rules, scraping every second) on the services of `make run`, runs the demo (`closeloop-demo`)
for `--duration` seconds, then (the demo still running) asks Prometheus every query of every panel of the shipped
dashboards (deploy/grafana/dashboards), with Grafana's variables replaced as a viewer would have
them (`$tenant`/`$headline`: every value; `$__rate_interval`: one minute). A panel is filled when
one of its queries answers at least one series. The table goes to `--out` (and stdout); the
command fails when a panel is empty, naming it.

Not part of `make test`: the demo needs minutes to reach the outer loop's panels (the silence
window, the structural issue, the campaign).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from closeloop_common.services import SERVICES
from closeloop_devtools.prometheus import Prometheus

DASHBOARDS = Path(__file__).resolve().parents[4] / "deploy" / "grafana" / "dashboards"
HEADER = """# Dashboard coverage

Written by `make dashboard-coverage` on {day}: the demo (`make run`) fed for {seconds:g} s under a
real Prometheus (the shipped configuration and rules, scraping every second); every query of every
panel of deploy/grafana/dashboards asked while it ran. "series" is how many series the panel's
queries answered; a panel with none would fail the command.

"""
ASK_WITHIN = 60.0  # seconds the demo runs on while the panels are asked
VARIABLES = {"$__rate_interval": "1m", "$tenant": ".+", "$headline": ".+"}


def queries(dashboard: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(panel title, its expressions with the variables replaced) of every panel with queries."""
    found = []
    for panel in dashboard["panels"]:
        exprs = [target["expr"] for target in panel.get("targets", ())]
        if not exprs:
            continue
        for name, value in VARIABLES.items():
            exprs = [expr.replace(name, value) for expr in exprs]
        found.append((str(panel["title"]), exprs))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dashboard-coverage", description=__doc__)
    parser.add_argument("--duration", type=float, default=270.0, help="seconds of demo feed")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    binary = shutil.which("prometheus")
    if binary is None:
        print("needs the prometheus binary (Debian's prometheus package)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="closeloop-dashboards-"))
    server = Prometheus(
        binary=binary,
        workdir=workdir,
        targets={spec.directory: f"127.0.0.1:{spec.port}" for spec in SERVICES},
    )
    server.start()
    try:
        # Asked while the services still run: a stopped target's gauges go stale at once.
        demo = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "closeloop-demo"),
                "--duration",
                str(args.duration + ASK_WITHIN),
            ]
        )
        time.sleep(args.duration)
        rows = ["| dashboard | panel | series |", "| --- | --- | --- |"]
        empty = []
        for path in sorted(DASHBOARDS.glob("*.json")):
            for title, exprs in queries(json.loads(path.read_text(encoding="utf-8"))):
                series = sum(len(server.query(expr)) for expr in exprs)
                rows.append(f"| {path.stem} | {title} | {series} |")
                if series == 0:
                    empty.append(f"{path.stem}: {title}")
        if demo.wait() != 0:
            print(f"the demo ended with {demo.returncode}", file=sys.stderr)
            return demo.returncode
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    table = "\n".join(rows) + "\n"
    print(table)
    if args.out is not None:
        args.out.write_text(HEADER.format(day=date.today(), seconds=args.duration) + table)
    if empty:
        print("empty panels:\n  " + "\n  ".join(empty), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
