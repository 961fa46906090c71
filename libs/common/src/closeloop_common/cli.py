"""The command line every service has: `serve` (HTTP + consumers + relay) and `migrate`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from closeloop_common.db import upgrade
from closeloop_common.logging import configure_logging
from closeloop_common.settings import CommonSettings


def service_main(
    *,
    name: str,
    schema: str,
    migrations_dir: Path,
    app_factory: Callable[[], FastAPI],
    default_port: int,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"closeloop-{name}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve HTTP and run the consumers and outbox relay")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=default_port)
    commands.add_parser("migrate", help=f"apply the migrations of the `{schema}` schema")
    args = parser.parse_args(argv)

    settings = CommonSettings()
    configure_logging(name, settings.log_level, settings.log_format)
    if args.command == "migrate":
        upgrade(migrations_dir, settings.database_url, schema)
        return 0
    uvicorn.run(
        app_factory(),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0
