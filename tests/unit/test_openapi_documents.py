"""Every service's OpenAPI document is whole: each `$ref` names a schema the document holds, so
generated clients (a CRM's) and fuzzers read every body."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from closeloop_ingest.entrypoints.app import create_ingest_app
from closeloop_notifier.entrypoints.app import create_notifier_app
from closeloop_orchestrator.entrypoints.app import create_orchestrator_app
from closeloop_scoring.entrypoints.app import create_scoring_app

APPS: dict[str, Callable[[], FastAPI]] = {
    "ingest": create_ingest_app,
    "scoring": create_scoring_app,
    "orchestrator": create_orchestrator_app,
    "notifier": create_notifier_app,
}


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


@pytest.mark.parametrize("service", sorted(APPS))
def test_every_reference_resolves(service: str) -> None:
    document = APPS[service]().openapi()
    schemas = document.get("components", {}).get("schemas", {})
    unresolved = {
        ref
        for ref in references(document)
        if ref.removeprefix("#/components/schemas/") not in schemas
    }
    assert unresolved == set()


def test_the_canonical_responses_body_is_documented() -> None:
    document = create_ingest_app().openapi()
    body = document["paths"]["/v1/responses"]["post"]["requestBody"]["content"]
    assert set(references(body["application/json"]["schema"])) == {
        "#/components/schemas/CanonicalResponse",
        "#/components/schemas/ResponseBatch",
    }
