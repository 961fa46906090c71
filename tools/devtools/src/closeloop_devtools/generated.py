"""Files generated from other files (the Kubernetes resources made of the rules, dashboards and
topics): written by their command, or checked with `--check` (exit 1 when out of step)."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(out: Path, wanted: str, *, check: bool, command: str, source: str) -> int:
    """Write `wanted` to `out`, or with `check` say whether `out` already holds it."""
    if check:
        if not out.exists() or out.read_text() != wanted:
            print(f"{out} is out of step with {source}: run {command}", file=sys.stderr)
            return 1
        return 0
    out.write_text(wanted)
    print(f"wrote {out}")
    return 0
