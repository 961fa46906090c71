"""Outbound webhooks (httpx), signed with the Standard Webhooks scheme: the `webhook` channel.

`WebhookChannel.send` POSTs `json.dumps(message.payload)` to `message.recipient` (a URL) with
`webhook-id` (the message id, stable across retries, so a receiver can drop a repeat),
`webhook-timestamp` and `webhook-signature` (HMAC-SHA256 under the `whsec_...` secret in
`message.secret`; `standardwebhooks`). It returns on a 2xx and otherwise raises
`DeliveryError`, never `ChannelUnavailable` or `ChannelMisconfigured`: every message has its own
target (a tenant's chat or CRM), so one receiver that is down or refuses us must not hold the
messages of the others.

- `permanent=True`: the URL is not http(s), its host is a private target (below), the message has
  no usable secret or payload, or the receiver answered 3xx (redirects are not followed: a
  signed request goes only where it was configured to go) or a 4xx other than 408, 425 and 429
  (410 Gone included).
- `permanent=False`: 408, 425, 429 or 5xx (with `retry_after` from a `Retry-After` header, in
  seconds or as an HTTP date, capped at `max_retry_after`), a timeout, a refused or dropped
  connection, a TLS failure, a host name that does not resolve.

SSRF guard. Every new connection resolves the host itself (`loop.getaddrinfo`) and is refused if
ANY address is loopback, private, link-local, multicast, reserved, unspecified or otherwise not
global (IPv4 inside IPv6 is unwrapped: `::ffff:127.0.0.1`, 6to4, Teredo, NAT64), unless the
channel allows private targets or the host name is on its allowlist. The connection is then
opened to the address just checked (no second lookup that DNS rebinding could answer
differently). This happens in the network layer under httpx (a custom httpcore network backend),
so the URL keeps its host name: the `Host` header, TLS SNI and certificate verification all use
the name, and the connection pool is keyed by it, so a kept-alive connection verified for one
host is never reused for another that happens to share its address.
"""

from __future__ import annotations

import asyncio
import binascii
import ipaddress
import json
import math
import socket
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore
import httpx
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from closeloop_common.clock import Clock, SystemClock
from closeloop_notifier.adapters.channels import DeliveryError, Outgoing

Resolver = Callable[[str, int], Awaitable[list[str]]]

# Temporary refusals: request timeout, too early, too many requests.
_RETRIABLE_4XX = frozenset({408, 425, 429})
_MAX_BODY = 2048  # of a response, read for the error detail only
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(Exception):
    """The webhook's host is not one we may connect to (see the module docstring)."""


def refusal_of(address: str) -> str | None:
    """Why a connection to `address` (an IP address) is refused, or None if it is allowed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = refusal_of(str(embedded))
            if inner is not None:
                return f"{ip} wraps {inner}"
    for kind, applies in (
        ("an unspecified", ip.is_unspecified),
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a private", ip.is_private),
        ("a reserved", ip.is_reserved),
        ("a non-global", not ip.is_global),
    ):
        if applies:
            return f"{ip}, {kind} address"
    return None


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host` (an IP literal resolves to itself), in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the SSRF guard in front of every TCP connection."""

    def __init__(
        self, *, allow_private: bool, allowed_hosts: frozenset[str], resolver: Resolver
    ) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._allowed_hosts = allowed_hosts
        self._resolve = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:  # socket.gaierror: no such host, or the resolver is down
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        if not self._allow_private and host.lower().rstrip(".") not in self._allowed_hosts:
            for address in addresses:
                reason = refusal_of(address)
                if reason is not None:
                    raise TargetRefused(f"{host} resolves to {reason}")
        failure: Exception | None = None
        for address in addresses:  # pinned: only the addresses just checked
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool with the guarded backend; a response body is
    read (at most `_MAX_BODY` bytes) before it is returned. httpcore's exceptions pass
    unmapped; `WebhookChannel.send` classifies them."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, AsyncIterable)
        response = await self._pool.handle_async_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        body = b""
        try:
            assert isinstance(response.stream, AsyncIterable)
            async for chunk in response.stream:
                body += chunk
                if len(body) >= _MAX_BODY:
                    break
        finally:
            await response.aclose()
        return httpx.Response(
            status_code=response.status, headers=response.headers, content=body[:_MAX_BODY]
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class WebhookChannel:
    """The `webhook` channel: signed JSON POSTs to each message's URL (module docstring)."""

    name = "webhook"

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        allow_private: bool = False,
        allowed_hosts: Iterable[str] = (),
        ssl_context: ssl.SSLContext | None = None,
        max_retry_after: timedelta = timedelta(hours=1),
        max_connections: int = 20,
        clock: Clock | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        """`allow_private`: any target (tests, a receiver on the same private network);
        `allowed_hosts`: host names allowed whatever they resolve to; `ssl_context`: the CAs
        to trust (default: certifi's); `resolver`: the DNS lookup (tests)."""
        self._clock: Clock = clock or SystemClock()
        self._max_retry_after = max_retry_after
        backend = _GuardedBackend(
            allow_private=allow_private,
            allowed_hosts=frozenset(h.lower().rstrip(".") for h in allowed_hosts),
            resolver=resolver,
        )
        pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            network_backend=backend,
        )
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(pool),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            # No proxies from the environment: a proxy would connect past the guard.
            trust_env=False,
            headers={"user-agent": "closeloop-notifier"},
        )

    async def send(self, message: Outgoing) -> None:
        """POST `message` signed to its URL; raises as the module docstring says."""
        url = _target(message.recipient)
        body = _body(message)
        sent_at = self._clock.now().astimezone(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message.message_id,
            "webhook-timestamp": str(math.floor(sent_at.timestamp())),
            "webhook-signature": _signer(message).sign(message.message_id, sent_at, body),
        }
        try:
            response = await self._client.post(url, content=body.encode("utf-8"), headers=headers)
        except TargetRefused as exc:
            raise DeliveryError(f"webhook target refused: {exc}", permanent=True) from exc
        except (httpcore.TimeoutException, httpx.TimeoutException) as exc:
            raise DeliveryError(
                f"webhook timed out: {type(exc).__name__}", permanent=False
            ) from exc
        except (
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpx.TransportError,
            OSError,
        ) as exc:
            # Refused, reset, TLS failure, bad HTTP from the receiver: maybe fixed by a retry.
            raise DeliveryError(
                f"webhook failed: {type(exc).__name__}: {exc}", permanent=False
            ) from exc
        self._judge(response)

    def _judge(self, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        text = response.text[:200].strip()
        detail = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        if 300 <= status < 400:
            raise DeliveryError(f"{detail} (redirects are not followed)", permanent=True)
        if 400 <= status < 500 and status not in _RETRIABLE_4XX:
            raise DeliveryError(detail, permanent=True)
        raise DeliveryError(
            detail, permanent=False, retry_after=self._retry_after(response.headers)
        )

    def _retry_after(self, headers: httpx.Headers) -> timedelta | None:
        """`Retry-After` (seconds or an HTTP date) as a wait from now, capped; None if absent
        or not understood."""
        value = headers.get("retry-after", "").strip()
        if not value:
            return None
        if value.isdigit():
            wait = timedelta(seconds=min(int(value), 10**9))
        else:
            try:
                at = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            wait = at - self._clock.now()
        return min(max(wait, timedelta(0)), self._max_retry_after)

    async def aclose(self) -> None:
        await self._client.aclose()


def _target(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise DeliveryError(f"webhook URL not valid: {exc}", permanent=True) from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DeliveryError(f"webhook URL must be http(s) with a host: {url!r}", permanent=True)
    return parsed


def _body(message: Outgoing) -> str:
    try:
        return json.dumps(message.payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DeliveryError(f"webhook payload is not JSON: {exc}", permanent=True) from exc


def _signer(message: Outgoing) -> Webhook:
    """The signer for `message`'s secret. A message without a usable secret is refused for
    good: an unsigned webhook could not be told from a forged one, and holding the whole
    channel for one tenant's settings would stop every other tenant's webhooks."""
    if not message.secret:
        raise DeliveryError("webhook has no signing secret", permanent=True)
    try:
        return Webhook(message.secret)
    except (binascii.Error, EmptyWebhookSecretError, ValueError) as exc:
        raise DeliveryError("webhook signing secret is not valid base64", permanent=True) from exc
