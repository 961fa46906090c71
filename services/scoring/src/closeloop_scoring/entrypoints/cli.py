"""`closeloop-scoring serve|migrate|rebuild`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from closeloop_common.cli import service_main
from closeloop_common.runtime import consumer_group
from closeloop_scoring.adapters.tables import SCHEMA
from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.entrypoints.app import create_scoring_app
from closeloop_scoring.service_layer.rebuild import GroupActive, rebuild

PORT = 8002


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["rebuild"]:
        settings = ScoringSettings()
        group_id = consumer_group(settings, "scoring")
        try:
            rewound = asyncio.run(rebuild(settings, group_id))
        except GroupActive as exc:
            print(f"closeloop-scoring rebuild: {exc}", file=sys.stderr)
            return 1
        print(
            f"rewound {group_id} on {rewound} and emptied the {SCHEMA} aggregates: "
            "start scoring to recount from the first offset"
        )
        return 0
    return service_main(
        name="scoring",
        schema=SCHEMA,
        migrations_dir=Path(__file__).resolve().parents[1] / "migrations",
        app_factory=create_scoring_app,
        default_port=PORT,
        argv=argv,
    )
