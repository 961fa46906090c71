"""The Markdown table a benchmark writes (to a file and to the terminal)."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path


def write_report(out: Path, *, title: str, setup: str, rows: Sequence[tuple[str, str]]) -> str:
    """Write `rows` as a two-column table under a dated title and the machine's description."""
    table = "\n".join(
        [
            f"# {title} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python "
            f"{platform.python_version()}; {setup}",
            "",
            "| measure | result |",
            "| --- | --- |",
            *[f"| {k} | {v} |" for k, v in rows],
            "",
        ]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table, encoding="utf-8")
    print(table)
    return table
