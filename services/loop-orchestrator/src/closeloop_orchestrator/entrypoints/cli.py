"""`closeloop-orchestrator serve|migrate`."""

from __future__ import annotations

from pathlib import Path

from closeloop_common.cli import service_main
from closeloop_orchestrator.adapters.tables import SCHEMA
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app

PORT = 8003


def main(argv: list[str] | None = None) -> int:
    return service_main(
        name="orchestrator",
        schema=SCHEMA,
        migrations_dir=Path(__file__).resolve().parents[1] / "migrations",
        app_factory=create_orchestrator_app,
        default_port=PORT,
        argv=argv,
    )
