"""The OpenAPI document states what the shared HTTP shell answers, and how resources chain.

FastAPI documents each route's own success and its 422 (as `HTTPValidationError`, in
`application/json`). What every Closeloop service really answers besides is added here, so clients
and fuzzers (tests/integration/test_api_fuzz.py) can rely on the document:

- every error answer is RFC 9457 problem details (`application/problem+json`, schema `Problem`),
  the validation one included (`web.install_problem_handlers`);
- a route behind a bearer token may answer 401 (no or bad token) and 403 (scope missing);
- a route naming a resource in its path may answer 404; one with a body or parameters 422, one
  with a body 413 (`BodySizeLimitMiddleware`);
- `/metrics` is Prometheus' text format.

`add_links` adds OpenAPI links (create → read → update), which Schemathesis' stateful phase and
generated clients follow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `type` is a stable URN per kind of problem.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}
NO_NUL = (
    "No text may hold the NUL character (U+0000), in a path, query or body: such a request is a "
    "422 validation problem."
)
_SHARED_ANSWERS = {
    "400": "The body is not JSON (or not UTF-8)",
    "401": "No token, or a token that is not valid (WWW-Authenticate says why)",
    "403": "The token lacks the scope this operation needs",
    "404": "Nothing by that name for the tenant",
    "413": "The request body is over the size limit",
    "412": "If-Match names a version other than the current one (read it again)",
    "422": "The request is not valid (`errors` names each field at fault)",
    "428": "If-Match is required: a change is made only to the version you saw",
    "503": "Not ready or a worker died (the problem says which)",
}
# A parameter's schema mark: the document lists the parameter as required, though the route takes
# its absence itself (to answer with a more precise status than 422).
REQUIRED_IN_DOCUMENT = "x-closeloop-required"
# The ETags the services give (`web.expected_version` also takes them bare or padded).
ETAG_PATTERN = r'^(W/)?"[0-9]{1,9}"$'

# Router-level answers (`APIRouter(responses=...)`) for problems some routes raise themselves.
BAD_REQUEST: dict[int | str, dict[str, Any]] = {
    400: {"description": "The parameters do not fit together (a window, a cursor)"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Not allowed in the resource's current state, or nothing to change"}
}
UPSTREAM_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "A service this answer needs is unavailable; try again"}
}
_METHODS = ("get", "put", "post", "delete", "patch")


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Add the shared answers (module docstring) to `document`, in place; return it."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    _closed_pattern_maps(document)
    info = document.setdefault("info", {})
    info["description"] = (info.get("description", "") + "\n\n" + NO_NUL).strip()
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if method in _METHODS:
                _complete_operation(path, operation)
    return document


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    parameters = operation.get("parameters", [])
    wanted: list[str] = []
    if operation.get("security"):
        wanted += ["401", "403"]
    if any(p.get("in") == "path" for p in parameters):
        wanted.append("404")
    if parameters or "requestBody" in operation:
        wanted.append("422")
    if "requestBody" in operation:
        wanted += ["400", "413"]
    if_match = [p for p in parameters if p.get("in") == "header" and p["name"] == "if-match"]
    for parameter in if_match:
        wanted += ["412", "428"]
        _pattern(parameter.get("schema", {}), ETAG_PATTERN)
    for parameter in parameters:
        if parameter.get("schema", {}).pop(REQUIRED_IN_DOCUMENT, False):
            parameter["required"] = True
            parameter["schema"] = _without_null(parameter["schema"])
    if path in ("/healthz", "/readyz"):
        wanted.append("503")
    for status in wanted:
        responses.setdefault(status, {"description": _SHARED_ANSWERS[status]})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            _as_problem(response)
    if path == "/metrics":
        responses["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}


def _closed_pattern_maps(node: Any) -> None:
    """A pydantic `dict[Key, V]` with a key pattern is `patternProperties`, which JSON Schema
    leaves open to other keys; the model refuses them, so the document says so."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _closed_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _closed_pattern_maps(value)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without its null branch (`str | None` → string)."""
    branches: list[dict[str, Any]] = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return rest | branches[0]


def _pattern(schema: dict[str, Any], pattern: str) -> None:
    """Put `pattern` on the string branch of `schema` (`str | None` is an anyOf)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["pattern"] = pattern


def _as_problem(response: dict[str, Any]) -> None:
    """A problem document, unless the route documented another body (an HTML page, a result)."""
    content: dict[str, Any] = response.get("content") or {}
    generic = not content or all(
        media == "application/json"
        and body.get("schema", {}) in ({}, {"$ref": "#/components/schemas/HTTPValidationError"})
        for media, body in content.items()
    )
    if generic:
        response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}}


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: after `source` (method, path, status) answers, `target` (method, path)
    can be called with `parameters` (target parameter → runtime expression, e.g.
    `$response.body#/id`)."""

    source: tuple[str, str, str]
    target: tuple[str, str]
    parameters: Mapping[str, str] = field(default_factory=dict)
    name: str = ""


def add_links(document: dict[str, Any], links: list[Link]) -> dict[str, Any]:
    """Add `links` to `document` (in place; return it); a link whose end is not documented is an
    error, so a renamed route cannot silently drop it."""
    paths = document["paths"]
    for link in links:
        method, path, status = link.source
        target_method, target_path = link.target
        target = paths[target_path][target_method]
        response = paths[path][method]["responses"][status]
        name = link.name or target["operationId"]
        response.setdefault("links", {})[name] = {
            "operationId": target["operationId"],
            "parameters": dict(link.parameters),
        }
    return document


def completed_openapi(
    openapi: Callable[[], dict[str, Any]], links: list[Link] | None = None
) -> Callable[[], dict[str, Any]]:
    """`openapi` (an app's document builder) whose document is `complete`d and linked, once."""
    done: list[dict[str, Any]] = []

    def build() -> dict[str, Any]:
        if not done:
            done.append(add_links(complete(openapi()), links or []))
        return done[0]

    return build
