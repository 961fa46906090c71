"""hadolint finds nothing to say about the service Dockerfile."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.tools import run, tool

pytestmark = pytest.mark.deploy

DOCKERFILE = "deploy/docker/service.Dockerfile"


def test_hadolint_passes_the_service_dockerfile() -> None:
    result = run(tool("hadolint"), "--no-color", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_hadolint_flags_what_the_service_dockerfile_avoids(tmp_path: Path) -> None:
    # The check above can fail: an unpinned base image and a shell-form CMD are reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nCMD closeloop-ingest serve\n")
    result = run(tool("hadolint"), "--no-color", str(bad))
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # a `latest` base image
    assert "DL3025" in result.stdout  # CMD not in exec (JSON) form
