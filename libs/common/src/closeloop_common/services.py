"""The one list of Closeloop's services: name, console script, package, schema, default port.

Everything that enumerates the services derives from `SERVICES`: the process stack of the demo,
benchmark and end-to-end tests (devtools), the test set-up, and `make migrate` (through
`python -m closeloop_common.services scripts`). The files that cannot import it (the Makefile's
mypy packages, the root pyproject.toml, docker-compose.yml, the Dockerfile and the Kubernetes
base) are kept in step with it by tests/unit/test_service_lists.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    name: str  # short name: console script `closeloop-<name>`, image `closeloop/<name>`
    directory: str  # folder under services/, and the compose service and Kubernetes Deployment
    package: str  # import package
    schema: str  # the PostgreSQL schema the service owns
    port: int  # default HTTP port of `serve`

    @property
    def script(self) -> str:
        return f"closeloop-{self.name}"


SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition("ingest", "ingest", "closeloop_ingest", "ingest", 8001),
    ServiceDefinition("scoring", "scoring", "closeloop_scoring", "scoring", 8002),
    ServiceDefinition(
        "orchestrator", "loop-orchestrator", "closeloop_orchestrator", "orchestrator", 8003
    ),
    ServiceDefinition("notifier", "notifier", "closeloop_notifier", "notifier", 8004),
)


def service(name: str) -> ServiceDefinition:
    """The service called `name` (its short name, as in `closeloop-<name>`)."""
    for definition in SERVICES:
        if definition.name == name:
            return definition
    raise KeyError(f"no Closeloop service is called {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Print one field of every service, space-separated (for the Makefile and shell scripts)."""
    fields: dict[str, Callable[[ServiceDefinition], str]] = {
        "names": lambda s: s.name,
        "scripts": lambda s: s.script,
        "packages": lambda s: s.package,
        "schemas": lambda s: s.schema,
        "directories": lambda s: s.directory,
    }
    parser = argparse.ArgumentParser(prog="python -m closeloop_common.services")
    parser.add_argument("field", choices=sorted(fields))
    args = parser.parse_args(argv)
    print(" ".join(fields[args.field](s) for s in SERVICES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
