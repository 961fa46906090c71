"""The HTTP shell every service shares: RFC 9457 problem details, health, readiness, metrics.

Errors leave as `application/problem+json` with a stable `type` URN per kind of problem, so a
client can branch on `type` rather than parse `detail`. Before any route runs, a request with a
NUL character in a path parameter, query parameter or JSON body string is refused as a
validation problem (PostgreSQL cannot store it; see `storable.py`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from closeloop_common.identifiers import TENANT_ID_PATTERN
from closeloop_common.metrics import HTTP_LATENCY, HTTP_REQUESTS
from closeloop_common.runtime import ServiceRuntime
from closeloop_common.storable import (
    NUL,
    NUL_CHARACTER,
    NUL_MESSAGE,
    Location,
    may_hold_nul,
    nul_locations,
)

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_URN = "urn:closeloop:problem:"


class Problem(Exception):
    """An error a client can act on; rendered as RFC 9457 problem details."""

    def __init__(
        self, status: int, kind: str, title: str, detail: str | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.type = PROBLEM_URN + kind
        self.title = title
        self.detail = detail
        self.extensions = extensions


def problem_response(
    request: Request,
    status: int,
    type_: str,
    title: str,
    detail: str | None,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.url.path
    body.update(extensions)
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(
            request, exc.status, exc.type, exc.title, exc.detail, **exc.extensions
        )

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "location": list(e.get("loc", ())),
                "message": e.get("msg", ""),
                "kind": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        return problem_response(
            request,
            422,
            PROBLEM_URN + "validation",
            "The request is not valid",
            f"{len(errors)} field(s) failed validation",
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        # Keep the exception's headers: a 405 must say `Allow`, a 401 `WWW-Authenticate`.
        return problem_response(
            request, exc.status_code, "about:blank", title, detail, headers=exc.headers
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(
            request,
            500,
            PROBLEM_URN + "internal",
            "Internal server error",
            "The error was logged; nothing was accepted from this request.",
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


_TENANT_RE = re.compile(TENANT_ID_PATTERN)


async def _tenant_id(request: Request, x_tenant_id: Annotated[str | None, Header()] = None) -> str:
    """The tenant named by `X-Tenant-Id`, or the service's configured default tenant."""
    if x_tenant_id is None:
        runtime: ServiceRuntime = request.app.state.runtime
        return runtime.settings.default_tenant_id
    if not _TENANT_RE.match(x_tenant_id):
        raise Problem(
            400,
            "invalid-tenant",
            "Invalid tenant id",
            f"X-Tenant-Id must match {TENANT_ID_PATTERN}",
        )
    return x_tenant_id


TenantId = Annotated[str, Depends(_tenant_id)]


async def refuse_nul_characters(request: Request) -> None:
    """A validation problem naming every path parameter, query parameter and JSON body string
    that holds a NUL character. `create_app` runs it before every route."""
    found: list[Location] = [
        ("path", name)
        for name, value in request.path_params.items()
        if isinstance(value, str) and NUL in value
    ]
    found += [
        ("query", name)
        for name, value in request.query_params.multi_items()
        if NUL in name or NUL in value
    ]
    body = await request.body()  # FastAPI has read (and parsed) it already for a body route
    if may_hold_nul(body):
        try:
            document = await request.json()
        except (ValueError, RecursionError):
            document = None  # not JSON: the route's own parsing refuses or handles it
        found += [("body", *at) for at in nul_locations(document)]
    if found:
        raise RequestValidationError(
            [{"loc": at, "msg": NUL_MESSAGE, "type": NUL_CHARACTER} for at in found]
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (plain ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)


def create_app(
    *, title: str, runtime: ServiceRuntime, routers: Sequence[APIRouter], version: str = "0.1.0"
) -> FastAPI:
    """A FastAPI app whose lifespan starts and stops the service runtime."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=title,
        version=version,
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul_characters)],
    )
    app.state.runtime = runtime
    install_problem_handlers(app)

    app.add_middleware(MetricsMiddleware)

    @app.get("/healthz", tags=["operations"], summary="The process is alive and its workers run")
    async def healthz(request: Request) -> Response:
        dead = runtime.dead_tasks()
        if not dead:
            return JSONResponse({"status": "ok"})
        return problem_response(
            request,
            503,
            PROBLEM_URN + "worker-died",
            "A background worker died",
            "restart the process: " + ", ".join(dead),
            tasks=dead,
        )

    @app.get("/readyz", tags=["operations"], summary="The database and the broker are reachable")
    async def readyz(request: Request) -> Response:
        checks = await runtime.readiness()
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        return problem_response(
            request,
            503,
            PROBLEM_URN + "not-ready",
            "Service not ready",
            ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
            checks=checks,
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app
