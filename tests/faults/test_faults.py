"""Faults under a steady stream of responses, on a private broker and database (`make test-faults`).

Marked `faults`: a plain `pytest` (the main run of `make test`) leaves it out, `pytest -m faults`
runs it. See `closeloop_devtools.faults` for the scenario and `bench/faults.md` for its report
(written where `FAULTS_REPORT` says, else to .infra/logs/faults.md).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from closeloop_devtools.faults import FaultConfig, render, run_faults
from closeloop_devtools.faults_infra import ROOT

pytestmark = pytest.mark.faults


def test_every_fault_recovers_with_each_response_counted_once_and_nothing_lost() -> None:
    config = FaultConfig.from_env()
    result = asyncio.run(run_faults(config, keep_logs=ROOT / ".infra" / "logs"))
    report = render(result, config)
    # `make test-faults` keeps the report in bench/faults.md; `make test` in .infra/logs.
    out = Path(os.environ.get("FAULTS_REPORT") or ROOT / ".infra" / "logs" / "faults.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(report)
    assert [c for c in result.failures] == [], report
    assert [r.fault for r in result.recoveries if r.caught_up is None] == []
