"""`docker compose config` accepts docker-compose.yml (no Docker engine needed for it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.tools import ROOT, run, tool

pytestmark = pytest.mark.deploy


def test_docker_compose_config_accepts_the_compose_file() -> None:
    result = run(tool("docker-compose"), "-f", "docker-compose.yml", "config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_docker_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    # The check above can fail: a dependency on a service that does not exist is refused.
    broken = (
        (ROOT / "docker-compose.yml")
        .read_text()
        .replace(
            "      mailsink:\n        condition: service_healthy",
            "      mailcatcher:\n        condition: service_healthy",
        )
    )
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = run(
        tool("docker-compose"),
        "-f",
        str(tmp_path / "docker-compose.yml"),
        "--project-directory",
        str(ROOT),
        "config",
        "--quiet",
    )
    assert result.returncode != 0
    assert "mailcatcher" in result.stderr


def test_the_pinned_compose_is_the_one_the_makefile_names() -> None:
    makefile = (ROOT / "Makefile").read_text()
    named = re.search(r"^COMPOSE_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert named is not None
    go_mod = (ROOT / "tools" / "compose" / "go.mod").read_text()
    required = re.search(r"^\s*github\.com/docker/compose/v5 (\S+)", go_mod, re.MULTILINE)
    assert required is not None
    assert required.group(1) == named.group(1)
    result = run(tool("docker-compose"), "version", "--short")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == named.group(1).removeprefix("v")
