"""The Markdown table a benchmark writes (to a file and to the terminal)."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path


def write_report(
    out: Path,
    *,
    title: str,
    setup: str,
    rows: Sequence[tuple[str, str] | tuple[str, str, str]],
    notes: str = "",
) -> str:
    """Write `rows` as a table under a dated title and the machine's description: two columns,
    or three (measure, result, target) when any row has a target; `notes` follow the table."""
    if any(len(row) == 3 for row in rows):
        header = ["| measure | result | target |", "| --- | --- | --- |"]
        lines = [f"| {' | '.join((*row, '')[:3])} |" for row in rows]
    else:
        header = ["| measure | result |", "| --- | --- |"]
        lines = [f"| {row[0]} | {row[1]} |" for row in rows]
    table = "\n".join(
        [
            f"# {title} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python "
            f"{platform.python_version()}; {setup}",
            "",
            *header,
            *lines,
            "",
            *([notes.rstrip(), ""] if notes else []),
        ]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table, encoding="utf-8")
    print(table)
    return table
