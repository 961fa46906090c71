"""The HTTP shell every service shares: RFC 9457 problem details, bearer authentication, health,
readiness, metrics and a request body limit.

Errors leave as `application/problem+json` with a stable `type` URN per kind of problem, so a
client can branch on `type` rather than parse `detail`. Before any route runs, a request with a
NUL character in a path parameter, query parameter or JSON body string is refused as a
validation problem (PostgreSQL cannot store it; see `storable.py`).

Authentication: every route except `/healthz`, `/readyz` and `/metrics` takes one of the
`Annotated` tenant aliases below (`tenant: ReadTenant`), which verifies the bearer token
(`closeloop_common.auth`) and returns the token's tenant: the tenant never comes from a header the
caller chooses. A missing or bad token is a 401 `unauthorized` problem with a
`WWW-Authenticate: Bearer` challenge (RFC 6750); a token without the route's scope is a 403
`forbidden` problem (`insufficient_scope`).

`/metrics` moves to its own listener when `METRICS_PORT` is set (kept off the public ingress).
With tracing on, every request is a server span named by its route template (`TracingMiddleware`).
Request bodies over `MAX_REQUEST_BODY_BYTES` are refused with 413 before they are read whole.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from closeloop_common import tracing
from closeloop_common.auth import Authenticator, KeysUnavailable, Principal, Unauthorized
from closeloop_common.auth import Scope as AuthScope
from closeloop_common.errors import is_transient
from closeloop_common.metrics import HTTP_LATENCY, HTTP_REQUESTS
from closeloop_common.openapi import REQUIRED_IN_DOCUMENT, Link, completed_openapi
from closeloop_common.runtime import ServiceRuntime, is_ready
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
        self,
        status: int,
        kind: str,
        title: str,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.type = PROBLEM_URN + kind
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extensions = extensions

    def body(self, instance: str) -> dict[str, Any]:
        """The problem document for a request to `instance` (its path)."""
        return problem_body(
            self.status, self.type, self.title, self.detail, instance=instance, **self.extensions
        )


def validation_problem(errors: list[dict[str, Any]]) -> Problem:
    """422: `errors` are `{"location", "message", "kind"}`, one per field at fault."""
    return Problem(
        422,
        "validation",
        "The request is not valid",
        f"{len(errors)} field(s) failed validation",
        errors=errors,
    )


def internal_problem() -> Problem:
    return Problem(
        500,
        "internal",
        "Internal server error",
        "The error was logged; nothing was accepted from this request.",
    )


def unavailable_problem() -> Problem:
    return Problem(
        503,
        "unavailable",
        "Service unavailable",
        "the database or broker this request needs is unavailable (or was restarted); the "
        "request may not have been carried out: send it again shortly",
        headers={"Retry-After": "1"},
    )


def problem_body(
    status: int, type_: str, title: str, detail: str | None, *, instance: str, **extensions: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = instance
    body.update(extensions)
    return body


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
    body = problem_body(status, type_, title, detail, instance=request.url.path, **extensions)
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(
            request,
            exc.status,
            exc.type,
            exc.title,
            exc.detail,
            headers=exc.headers,
            **exc.extensions,
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
        return await on_problem(request, validation_problem(errors))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        # Keep the exception's headers: a 405 must say `Allow`, a 401 `WWW-Authenticate`.
        return problem_response(
            request, exc.status_code, "about:blank", title, detail, headers=exc.headers
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # The route's template, not the path: a path can carry an email (DELETE
        # /v1/opt-outs/{email}), and personal data never goes into a log line.
        route = getattr(request.scope.get("route"), "path", "unmatched")
        if is_transient(exc):
            # An outage, or a pooled connection that died with a database restart (it fails
            # once, then the pool is renewed): the client should retry, as consumers do.
            log.warning(
                "infrastructure unavailable",
                extra={"route": route, "error": type(exc).__name__},
            )
            return await on_problem(request, unavailable_problem())
        log.exception("unhandled error", extra={"route": route})
        return await on_problem(request, internal_problem())

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
    # Starlette re-raises what reaches its `Exception` handler (uvicorn then logs a second
    # traceback, at error level, for an outage the warning above already told). The
    # infrastructure's own error classes are answered one step earlier, where nothing is
    # re-raised.
    for infrastructure_error in (sa_exc.SQLAlchemyError, OSError, KafkaError):
        app.add_exception_handler(infrastructure_error, on_unexpected)


REALM = "closeloop"
_BEARER = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    scheme_name="bearer",
    description="A JWT with the tenant and scopes (`closeloop-token mint` or your identity "
    "provider). Scopes: responses:write, read, cases:write, admin.",
)


def _unauthorized(reason: str, *, invalid_token: bool) -> Problem:
    # RFC 6750: no error code when no credentials were given, invalid_token for a bad token.
    challenge = f'Bearer realm="{REALM}"'
    if invalid_token:
        # The reason may quote the token (its `alg`): only printable ASCII goes into a header.
        description = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in reason)
        challenge += f', error="invalid_token", error_description="{description}"'
    return Problem(
        401, "unauthorized", "Unauthorized", reason, headers={"WWW-Authenticate": challenge}
    )


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The verified caller of `request` (401 problem otherwise)."""
    if credentials is None:
        raise _unauthorized("send Authorization: Bearer <token>", invalid_token=False)
    authenticator: Authenticator = request.app.state.authenticator
    try:
        principal = await authenticator.authenticate(credentials.credentials)
    except Unauthorized as exc:
        raise _unauthorized(str(exc), invalid_token=True) from exc
    except KeysUnavailable as exc:
        raise Problem(
            503,
            "auth-unavailable",
            "Token keys unavailable",
            "the identity provider's keys could not be fetched; try again shortly",
            headers={"Retry-After": "10"},
        ) from exc
    request.state.principal = principal
    return principal


def tenant_with_scope(
    scope: AuthScope,
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[str]]:
    """A dependency: the tenant of a verified token that holds `scope` (or admin)."""

    async def tenant(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> str:
        principal = await authenticate(request, credentials)
        if not principal.allows(scope):
            raise Problem(
                403,
                "forbidden",
                "Forbidden",
                f"this operation needs a token with the scope {scope.value}",
                headers={
                    "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                    f'scope="{scope.value}"'
                },
                error="insufficient_scope",
                required_scope=scope.value,
            )
        return principal.tenant

    return tenant


# What routes take in place of a tenant header, one per scope.
ResponsesWriteTenant = Annotated[str, Depends(tenant_with_scope(AuthScope.RESPONSES_WRITE))]
ReadTenant = Annotated[str, Depends(tenant_with_scope(AuthScope.READ))]
CasesWriteTenant = Annotated[str, Depends(tenant_with_scope(AuthScope.CASES_WRITE))]
AdminTenant = Annotated[str, Depends(tenant_with_scope(AuthScope.ADMIN))]


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` with a 413 problem, before they are read whole.

    A declared `Content-Length` over the limit is refused up front; a streamed (chunked) body is
    counted as it arrives and refused at the first byte over. Whatever the app would have
    answered to the cut-off body is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body it never got whole: replaced below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            Request(scope),
            413,
            PROBLEM_URN + "payload-too-large",
            "Request body too large",
            f"the request body is over {self.max_bytes} bytes",
            headers={"Connection": "close"},
            max_bytes=self.max_bytes,
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


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


class TracingMiddleware:
    """With tracing on, a server span per HTTP request (`tracing.serve_traced`): named by its
    route template, a child of the caller's `traceparent`; no path, query or body in it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        await tracing.serve_traced(self.app, scope, receive, send)


# FastAPI's own telemetry would trace with a global provider and put query strings in spans:
# off, whatever the environment says (`tracing.py` owns Closeloop's spans).
NO_FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "auto_configure": False,
}


def create_app(
    *,
    title: str,
    runtime: ServiceRuntime,
    routers: Sequence[APIRouter],
    version: str = "0.1.0",
    app_class: type[FastAPI] = FastAPI,
    links: Sequence[Link] = (),
) -> FastAPI:
    """A FastAPI app (of `app_class`) whose lifespan starts and stops the service runtime; its
    OpenAPI states the shared answers and `links` (`closeloop_common.openapi`)."""

    settings = runtime.settings
    authenticator = Authenticator.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not authenticator.configured:
            log.warning(
                "no token key configured (AUTH_PUBLIC_KEY, AUTH_PUBLIC_KEY_FILE or "
                "AUTH_JWKS_URL): every API request will be refused"
            )
        metrics_server = None
        if settings.metrics_port is not None:
            metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
            log.info(
                "metrics served on their own port",
                extra={"host": settings.metrics_host, "port": settings.metrics_port},
            )
        try:
            await runtime.start()
            try:
                yield
            finally:
                await runtime.stop()
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()

    app = app_class(
        title=title,
        version=version,
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul_characters)],
        telemetry=NO_FASTAPI_TELEMETRY,
    )
    app.state.runtime = runtime
    app.state.authenticator = authenticator
    install_problem_handlers(app)

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(TracingMiddleware)  # outermost: its span covers the whole request

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
        if is_ready(checks):
            return JSONResponse({"status": "ready", "checks": checks})
        return problem_response(
            request,
            503,
            PROBLEM_URN + "not-ready",
            "Service not ready",
            ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
            checks=checks,
        )

    if settings.metrics_port is None:

        @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    app.openapi = completed_openapi(app.openapi, list(links))  # type: ignore[method-assign]
    return app


# -- optimistic concurrency and actors, for every API that changes a versioned resource --------

_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,9})"?\s*$')

IfMatch = Annotated[
    str | None,
    Header(
        description='the resource\'s ETag (its version, `"7"`) as last read',
        max_length=40,
    ),
]


# Routes that change nothing without it (428): the OpenAPI states it is required
# (`closeloop_common.openapi`), while the route still answers its absence with 428, not 422.
RequiredIfMatch = Annotated[
    str | None,
    Header(
        description='the resource\'s ETag (its version, `"7"`) as last read; 428 without it',
        max_length=40,
        json_schema_extra={REQUIRED_IN_DOCUMENT: True},
    ),
]


def expected_version(if_match: str | None) -> int:
    """The version `If-Match` names: 428 without it, 412 when it is no ETag we gave."""
    if if_match is None:
        raise Problem(
            428,
            "precondition-required",
            "If-Match required",
            "send the resource's ETag (from its GET) in If-Match: a change is made only to the "
            "version you saw",
        )
    found = _ETAG.match(if_match)
    if found is None:
        raise Problem(412, "precondition-failed", "Unknown ETag", "If-Match is not an ETag we gave")
    return int(found.group(1))


def actor_of(request: Request) -> str:
    """Who makes a change: the verified token's subject (never a header or body field)."""
    principal: Principal = request.state.principal
    return principal.subject or f"token:{principal.token_id}"
