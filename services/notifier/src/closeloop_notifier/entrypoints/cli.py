"""`closeloop-notifier serve|migrate`."""

from __future__ import annotations

from pathlib import Path

from closeloop_common.cli import service_main
from closeloop_notifier.adapters.tables import SCHEMA
from closeloop_notifier.entrypoints.app import create_notifier_app

PORT = 8004


def main(argv: list[str] | None = None) -> int:
    return service_main(
        name="notifier",
        schema=SCHEMA,
        migrations_dir=Path(__file__).resolve().parents[1] / "migrations",
        app_factory=create_notifier_app,
        default_port=PORT,
        argv=argv,
    )
