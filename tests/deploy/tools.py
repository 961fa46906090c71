"""The pinned tools the deploy checks run, installed into .infra/bin by `make tools-deploy`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".infra" / "bin"


def tool(name: str) -> str:
    """The path of `name`: the pinned one in .infra/bin, else one on PATH; fails without either."""
    pinned = TOOLS_BIN / name
    if pinned.is_file():
        return str(pinned)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make tools-deploy` (installs into .infra/bin)")
    return found


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in the repository root; its output is captured as text."""
    return subprocess.run(
        list(args), cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
