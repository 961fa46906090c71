"""`closeloop-scoring serve|migrate`."""

from __future__ import annotations

from pathlib import Path

from closeloop_common.cli import service_main
from closeloop_scoring.adapters.tables import SCHEMA
from closeloop_scoring.entrypoints.app import create_scoring_app

PORT = 8002


def main(argv: list[str] | None = None) -> int:
    return service_main(
        name="scoring",
        schema=SCHEMA,
        migrations_dir=Path(__file__).resolve().parents[1] / "migrations",
        app_factory=create_scoring_app,
        default_port=PORT,
        argv=argv,
    )
