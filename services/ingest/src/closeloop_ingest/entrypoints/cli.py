"""`closeloop-ingest serve|migrate`."""

from __future__ import annotations

from pathlib import Path

from closeloop_common.cli import service_main
from closeloop_ingest.adapters.tables import SCHEMA
from closeloop_ingest.entrypoints.app import create_ingest_app

PORT = 8001


def main(argv: list[str] | None = None) -> int:
    return service_main(
        name="ingest",
        schema=SCHEMA,
        migrations_dir=Path(__file__).resolve().parents[1] / "migrations",
        app_factory=create_ingest_app,
        default_port=PORT,
        argv=argv,
    )
