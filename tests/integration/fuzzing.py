"""API fuzzing with Schemathesis: the four services' apps served in this process, and a fuzz
run over every operation their OpenAPI documents.

`ServedApps` serves the apps as the services' integration tests create them (ingest and the
notifier with their lifespan: relay, consumers, dispatcher; scoring and the orchestrator without,
as their tests do), each by uvicorn on a socket of its own, all on one event loop in a background
thread: their database engines stay on that loop from the first request to their disposal.

`fuzz` reads the OpenAPI the app serves, so a route added later is fuzzed without editing the
tests. For each operation it draws `examples` requests from Schemathesis' strategy (valid data, and
`negative` requests whose data breaks the schema), sends them with the given headers and runs the
checks; failures are collected (one per operation and check), not raised at the first, so a run
reports everything it found. `Tally` counts answers by status class, for the rejection share.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.schemas import OpenApiSchema

from closeloop_common.runtime import ServiceRuntime

# The checks every response must pass (see docs/RELIABILITY.md for why these four).
CHECKS: tuple[CheckFunction, ...] = (
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
)


class ServedApps:
    """Apps served over HTTP by uvicorn on one event loop in a background thread."""

    def __init__(self, names: Sequence[str]) -> None:
        self._sockets = {name: _bound_socket() for name in names}
        self.apps: dict[str, tuple[FastAPI, bool]] = {}
        self.urls = {
            name: f"http://127.0.0.1:{sock.getsockname()[1]}"
            for name, sock in self._sockets.items()
        }
        self._servers: list[uvicorn.Server] = []
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-servers", daemon=True)

    def start(self, apps: dict[str, tuple[FastAPI, bool]]) -> None:
        """Serve each named app (with its lifespan when its flag is set) at `urls[name]`."""
        self.apps = apps
        self._thread.start()
        if not self._started.wait(60) or self._error is not None:
            raise RuntimeError("the fuzzed apps did not start") from self._error

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        self._thread.join(60)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        for app, lifespan in self.apps.values():
            config = uvicorn.Config(
                app,
                lifespan="on" if lifespan else "off",
                log_level="warning",
                access_log=False,
            )
            server = uvicorn.Server(config)
            server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
            self._servers.append(server)
        tasks = [
            asyncio.create_task(server.serve(sockets=[self._sockets[name]]))
            for server, name in zip(self._servers, self.apps, strict=True)
        ]
        while not all(server.started for server in self._servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.05)
        self._started.set()
        await asyncio.gather(*tasks)
        # The apps served without their lifespan still hold engines opened on this loop.
        for app, lifespan in self.apps.values():
            if not lifespan:
                runtime = app.state.runtime
                assert isinstance(runtime, ServiceRuntime)
                await runtime.engine.dispose()
                await runtime.worker_engine.dispose()


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


@dataclass
class Tally:
    """Answers by status class (400 and 422 counted apart, as `refused`), per operation and
    generation mode; the failures found; the first 4xx answer of each operation."""

    statuses: dict[GenerationMode, Counter[str]] = field(default_factory=dict)
    by_operation: dict[str, Counter[str]] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    rejections: dict[str, str] = field(default_factory=dict)

    def sample(self, operation: str, status: int, text: str) -> None:
        """Keep the first 4xx answer of each operation (to see what is rejected, and why)."""
        if 400 <= status < 500:
            self.rejections.setdefault(operation, f"{status} {text[:300]}")

    def count(self, operation: str, mode: GenerationMode, status: int) -> None:
        # A refused body or parameters (400, 422) apart from other 4xx (404: a random id).
        kind = "refused" if status in (400, 422) else f"{status // 100}xx"
        self.statuses.setdefault(mode, Counter())[kind] += 1
        self.by_operation.setdefault(f"{operation} ({mode.value})", Counter())[kind] += 1

    def rejected_share(self, mode: GenerationMode = GenerationMode.POSITIVE) -> float:
        """The share of `mode`'s requests refused as invalid (400, 422)."""
        counts = self.statuses.get(mode, Counter())
        total = sum(counts.values())
        return counts["refused"] / total if total else 0.0

    def summary(self) -> str:
        return "; ".join(
            f"{mode.value} {sum(counts.values())} requests "
            f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}; "
            f"refused {self.rejected_share(mode):.0%})"
            for mode, counts in self.statuses.items()
        )

    def report(self) -> str:
        lines = [self.summary()]
        lines += [f"{op} [{check}]: {text}" for (op, check), text in sorted(self.failures.items())]
        return "\n".join(lines)


def load(url: str) -> OpenApiSchema:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    assert isinstance(schema, OpenApiSchema)
    # Every service refuses a NUL character in any text (the API's description says so): valid
    # data holds none.
    schema.config.generation.allow_x00 = False
    return schema


def fuzz(
    schema: OpenApiSchema,
    *,
    headers: dict[str, str],
    examples: int,
    negative: int = 0,
    tally: Tally,
    checks: Sequence[CheckFunction] = CHECKS,
    skip: Callable[[str], bool] = lambda _: False,
) -> None:
    """Every operation of `schema`: `examples` valid requests each and `negative` invalid ones
    (deterministic: derandomized)."""
    modes = {GenerationMode.POSITIVE: examples, GenerationMode.NEGATIVE: negative}
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid operation fails here
        if skip(operation.label):
            continue
        for mode, count in modes.items():
            if count:
                _fuzz_operation(operation, mode, headers, count, tally, checks)


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    headers: dict[str, str],
    examples: int,
    tally: Tally,
    checks: Iterable[CheckFunction],
) -> None:
    label: str = operation.label

    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        response = case.call(headers=headers, timeout=30)
        tally.count(label, mode, response.status_code)
        if mode is GenerationMode.POSITIVE:
            tally.sample(label, response.status_code, response.text)
        try:
            case.validate_response(response, checks=list(checks), headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (label, type(failure).__name__)
                if key not in tally.failures:
                    tally.failures[key] = (
                        f"{failure.title}: {str(failure.message)[:300]} "
                        f"(status {response.status_code}) <- {case.as_curl_command(headers=headers)[:600]}"
                    )

    # No invalid request exists for an operation without parameters or body.
    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()


# The stateful phase also checks what a chain of calls promises: a resource just created can be
# read, and one just deleted cannot.
STATEFUL_CHECKS: tuple[CheckFunction, ...] = (
    *CHECKS,
    schemathesis.checks.use_after_free,
    schemathesis.checks.ensure_resource_availability,
)


def fuzz_stateful(
    schema: OpenApiSchema,
    *,
    headers_for: Callable[[int], dict[str, str]],
    scenarios: int,
    steps: int,
    tally: Tally,
) -> None:
    """Schemathesis' state machine over the document's links: `scenarios` chains of at most
    `steps` calls (create → read → update ...); raises at the first failure (shrunk).

    Each chain runs with `headers_for(n)`, the n-th chain's token, meant for a tenant of its own:
    the answers then depend on the chain's calls only, never on an earlier chain's, as hypothesis
    needs to replay a chain (a `PUT` that created a resource in one chain must not find it made
    already when the chain is replayed)."""
    counter = itertools.count()
    # Invalid data is the first phase's business: chains are built of valid calls.
    schema.config.generation.modes = [GenerationMode.POSITIVE]
    base = schema.as_state_machine()

    class Chains(base):  # type: ignore[valid-type,misc]
        def setup(self) -> None:
            super().setup()
            self.headers = headers_for(next(counter))

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"headers": self.headers, "timeout": 30}

        def after_call(self, response: Any, case: Case[Any]) -> None:
            super().after_call(response, case)
            tally.count(case.operation.label, GenerationMode.POSITIVE, response.status_code)
            tally.sample(case.operation.label, response.status_code, response.text)

        def validate_response(
            self,
            response: Any,
            case: Case[Any],
            additional_checks: list[CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(
                response,
                checks=list(STATEFUL_CHECKS),
                headers=self.headers,
                recorder=self.recorder,
            )

    Chains.run(
        settings=hypothesis.settings(
            max_examples=scenarios,
            stateful_step_count=steps,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
    )
