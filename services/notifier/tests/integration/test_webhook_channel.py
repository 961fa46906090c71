"""The webhook channel against a real HTTP receiver on loopback (uvicorn in a thread): the
signature verifies with `standardwebhooks`, status codes are classed, private targets are
refused unless allowed, and a pinned HTTPS connection still verifies the host name."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from closeloop_common.clock import FixedClock
from closeloop_notifier.adapters.channels import DeliveryError, Outgoing
from closeloop_notifier.adapters.webhook import WebhookChannel, refusal_of
from services.notifier.tests.integration.certificates import Certificate, self_signed

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PAYLOAD = {
    "kind": "sla_breach",
    "case_id": "0195f0c2-7d1e-7c3a-9d4b-2f1e8a7b6c5d",
    "text": "Termin pierwszego kontaktu minął — Ewa Zielińska",
}


def outgoing(url: str, **fields: Any) -> Outgoing:
    return Outgoing(
        message_id=f"msg_{uuid.uuid4().hex}",
        tenant_id="acme",
        kind="sla_breach",
        recipient=url,
        subject="",
        text="",
        payload=fields.pop("payload", PAYLOAD),
        secret=fields.pop("secret", SECRET),
        **fields,
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int | None


@dataclass
class Receiver:
    """What a webhook receiver got, and what it answers (scripted replies, then 204)."""

    base: str = ""
    requests: list[Received] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        port = request.client.port if request.client else None
        self.requests.append(Received(request.url.path, dict(request.headers), body, port))
        if self.replies:
            status, headers = self.replies.pop(0)
            return Response(b"receiver says no", status_code=status, headers=headers)
        return Response(status_code=204)


def serve(receiver: Receiver, **config: Any) -> Iterator[Receiver]:
    """Runs uvicorn with `receiver` on a free loopback port in a thread, until the generator
    is closed."""
    app = Starlette(routes=[Route("/{path:path}", receiver.endpoint, methods=["POST", "GET"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started
        receiver.base = f"{port}"
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def http_server() -> Iterator[Receiver]:
    yield from serve(Receiver())


@pytest.fixture
def receiver(http_server: Receiver) -> Receiver:
    """An HTTP receiver at http://127.0.0.1:<port>, with nothing received yet."""
    http_server.requests.clear()
    http_server.replies.clear()
    return http_server


@pytest.fixture(scope="module")
def localhost_only(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A certificate for the name `localhost` only (no IP address in it)."""
    return self_signed(tmp_path_factory.mktemp("webhook-tls"), dns_names=("localhost",))


@pytest.fixture(scope="module")
def https_server(localhost_only: Certificate) -> Iterator[Receiver]:
    yield from serve(
        Receiver(), ssl_certfile=str(localhost_only.cert), ssl_keyfile=str(localhost_only.key)
    )


@pytest.fixture
def tls_receiver(https_server: Receiver) -> Receiver:
    """An HTTPS receiver on 127.0.0.1 with the `localhost` certificate, nothing received yet."""
    https_server.requests.clear()
    https_server.replies.clear()
    return https_server


@pytest.fixture
async def channels() -> AsyncIterator[Callable[..., WebhookChannel]]:
    made: list[WebhookChannel] = []

    def make(**options: Any) -> WebhookChannel:
        options.setdefault("timeout", 5)
        channel = WebhookChannel(**options)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.aclose()


def url(receiver: Receiver, path: str = "/hooks/closeloop", host: str = "127.0.0.1") -> str:
    return f"http://{host}:{receiver.base}{path}"


# -- signed delivery ---------------------------------------------------------------------------


async def test_webhook_to_a_loopback_receiver_verifies_with_standard_webhooks(
    receiver: Receiver, channels: Callable[..., WebhookChannel]
) -> None:
    message = outgoing(url(receiver))

    await channels(allow_private=True).send(message)

    [got] = receiver.requests
    assert got.path == "/hooks/closeloop"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == message.message_id
    assert Webhook(SECRET).verify(got.body, got.headers) == PAYLOAD
    assert got.body == json.dumps(PAYLOAD).encode()
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB").verify(got.body, got.headers)
    tampered = got.body.replace(b"sla_breach", b"sla_warning")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, got.headers)


async def test_signature_timestamp_comes_from_the_clock_and_the_id_is_stable_across_retries(
    receiver: Receiver, channels: Callable[..., WebhookChannel]
) -> None:
    at = datetime(2026, 6, 10, 8, 30, 15, 900_000, tzinfo=UTC)
    channel = channels(allow_private=True, clock=FixedClock(at))
    message = outgoing(url(receiver))
    receiver.replies = [(503, {})]

    with pytest.raises(DeliveryError):
        await channel.send(message)
    await channel.send(message)

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == message.message_id
    assert first.headers["webhook-timestamp"] == str(int(at.timestamp()))
    signed = Webhook(SECRET).sign(message.message_id, at, json.dumps(PAYLOAD))
    assert first.headers["webhook-signature"] == signed


@pytest.mark.parametrize(
    ("secret", "payload"),
    [(None, PAYLOAD), ("", PAYLOAD), (SECRET, {"not json": {1, 2}}), (SECRET, {"x": float("nan")})],
    ids=["no-secret", "empty-secret", "set", "nan"],
)
async def test_message_without_a_secret_or_json_payload_is_refused_before_sending(
    receiver: Receiver,
    channels: Callable[..., WebhookChannel],
    secret: str | None,
    payload: dict[str, Any],
) -> None:
    with pytest.raises(DeliveryError) as refused:
        await channels(allow_private=True).send(
            outgoing(url(receiver), secret=secret, payload=payload)
        )
    assert refused.value.permanent is True
    assert receiver.requests == []


async def test_connections_to_a_receiver_are_kept_alive_and_reused(
    receiver: Receiver, channels: Callable[..., WebhookChannel]
) -> None:
    channel = channels(allow_private=True)
    for _ in range(5):
        await channel.send(outgoing(url(receiver)))
    assert len(receiver.requests) == 5
    assert len({r.client_port for r in receiver.requests}) == 1  # one TCP connection


# -- status codes ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_2xx_is_delivered(
    receiver: Receiver, channels: Callable[..., WebhookChannel], status: int
) -> None:
    receiver.replies = [(status, {})]
    await channels(allow_private=True).send(outgoing(url(receiver)))
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
async def test_4xx_other_than_408_425_429_is_refused_for_good(
    receiver: Receiver, channels: Callable[..., WebhookChannel], status: int
) -> None:
    receiver.replies = [(status, {})]
    with pytest.raises(DeliveryError) as refused:
        await channels(allow_private=True).send(outgoing(url(receiver)))
    assert refused.value.permanent is True
    assert str(status) in str(refused.value)
    assert "receiver says no" in str(refused.value)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_408_425_429_and_5xx_are_retried(
    receiver: Receiver, channels: Callable[..., WebhookChannel], status: int
) -> None:
    receiver.replies = [(status, {})]
    with pytest.raises(DeliveryError) as refused:
        await channels(allow_private=True).send(outgoing(url(receiver)))
    assert refused.value.permanent is False
    assert refused.value.retry_after is None


async def test_redirect_is_not_followed_and_refused_for_good(
    receiver: Receiver, channels: Callable[..., WebhookChannel]
) -> None:
    receiver.replies = [(307, {"location": url(receiver, "/elsewhere")})]
    with pytest.raises(DeliveryError, match="redirect") as refused:
        await channels(allow_private=True).send(outgoing(url(receiver)))
    assert refused.value.permanent is True
    assert [r.path for r in receiver.requests] == ["/hooks/closeloop"]


NOW = datetime(2026, 6, 10, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [
        ("120", timedelta(seconds=120)),
        ("0", timedelta(0)),
        ("99999999999", timedelta(hours=1)),  # capped
        (format_datetime(NOW + timedelta(minutes=5), usegmt=True), timedelta(minutes=5)),
        (format_datetime(NOW - timedelta(minutes=5), usegmt=True), timedelta(0)),
        ("soon", None),
        ("-5", None),
    ],
)
async def test_retry_after_is_read_in_seconds_or_as_a_date_and_capped(
    receiver: Receiver,
    channels: Callable[..., WebhookChannel],
    retry_after: str,
    wait: timedelta | None,
) -> None:
    receiver.replies = [(429, {"retry-after": retry_after})]
    channel = channels(
        allow_private=True, clock=FixedClock(NOW), max_retry_after=timedelta(hours=1)
    )
    with pytest.raises(DeliveryError) as refused:
        await channel.send(outgoing(url(receiver)))
    assert refused.value.permanent is False
    assert refused.value.retry_after == wait


async def test_receiver_that_is_down_is_a_temporary_failure(
    channels: Callable[..., WebhookChannel],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once closed
    with pytest.raises(DeliveryError) as failed:
        await channels(allow_private=True).send(outgoing(f"http://127.0.0.1:{port}/hook"))
    assert failed.value.permanent is False


async def test_receiver_that_never_answers_times_out_as_a_temporary_failure(
    channels: Callable[..., WebhookChannel],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(DeliveryError, match="timed out") as failed:
            await channels(allow_private=True, timeout=0.3).send(
                outgoing(f"http://127.0.0.1:{port}/hook")
            )
    assert failed.value.permanent is False


async def test_host_that_does_not_resolve_is_a_temporary_failure(
    channels: Callable[..., WebhookChannel],
) -> None:
    async def nowhere(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(DeliveryError, match="resolve") as failed:
        await channels(resolver=nowhere).send(outgoing("https://hooks.partner.example/x"))
    assert failed.value.permanent is False


# -- the SSRF guard ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.1:{port}/hook", "loopback"),
        ("http://localhost:{port}/hook", "loopback"),
        ("http://[::1]:{port}/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://172.16.5.4/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[fd00::1]/hook", "private"),
        ("http://0.0.0.0:{port}/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://100.64.0.1/hook", "non-global"),
        ("http://[2002:7f00:1::]/hook", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("http://2130706433:{port}/hook", "loopback"),  # 127.0.0.1 as one number
    ],
)
async def test_private_and_loopback_targets_are_refused_for_good(
    receiver: Receiver, channels: Callable[..., WebhookChannel], target: str, reason: str
) -> None:
    with pytest.raises(DeliveryError, match=reason) as refused:
        await channels().send(outgoing(target.format(port=receiver.base)))
    assert refused.value.permanent is True
    assert receiver.requests == []


async def test_host_with_any_private_address_is_refused(
    channels: Callable[..., WebhookChannel],
) -> None:
    async def split_horizon(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.5"]

    with pytest.raises(DeliveryError, match=r"hooks\.partner\.example resolves to 10\.0\.0\.5"):
        await channels(resolver=split_horizon).send(outgoing("https://hooks.partner.example/x"))


async def test_connection_goes_to_the_address_the_guard_checked_and_keeps_the_host_name(
    receiver: Receiver, channels: Callable[..., WebhookChannel]
) -> None:
    """`hooks.partner.test` exists in no DNS: the request can only have reached the receiver
    through the address the guard resolved and checked, with no second lookup to rebind."""
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    channel = channels(resolver=resolver, allowed_hosts=["hooks.partner.test"])
    await channel.send(outgoing(f"http://hooks.partner.test:{receiver.base}/hook"))
    await channel.send(outgoing(f"http://hooks.partner.test:{receiver.base}/hook"))

    assert asked == ["hooks.partner.test"]  # once: the second request reused the connection
    assert [r.headers["host"] for r in receiver.requests] == [
        f"hooks.partner.test:{receiver.base}"
    ] * 2


@pytest.mark.parametrize(
    "target",
    [
        "ftp://hooks.partner.example/x",
        "file:///etc/passwd",
        "hooks.partner.example/x",
        "http://",
        "gopher://127.0.0.1:70/",
    ],
)
async def test_url_that_is_not_http_is_refused_for_good(
    channels: Callable[..., WebhookChannel], target: str
) -> None:
    with pytest.raises(DeliveryError) as refused:
        await channels(allow_private=True).send(outgoing(target))
    assert refused.value.permanent is True


async def test_allowlisted_host_name_may_resolve_to_loopback_but_its_address_may_not(
    receiver: Receiver, channels: Callable[..., WebhookChannel]
) -> None:
    channel = channels(allowed_hosts=["LOCALHOST."])

    await channel.send(outgoing(url(receiver, host="localhost")))
    with pytest.raises(DeliveryError, match="loopback"):
        await channel.send(outgoing(url(receiver)))

    assert len(receiver.requests) == 1


def test_refusal_of_allows_public_addresses() -> None:
    assert refusal_of("93.184.215.14") is None
    assert refusal_of("2606:2800:21f:cb07:6820:80da:af6b:8b2c") is None
    assert refusal_of("::ffff:127.0.0.1") is not None
    assert refusal_of("64:ff9b::a00:1") is not None  # NAT64 of 10.0.0.1


# -- HTTPS through the pinned connection -------------------------------------------------------


async def test_https_to_a_pinned_address_still_verifies_the_host_name(
    tls_receiver: Receiver, channels: Callable[..., WebhookChannel], localhost_only: Certificate
) -> None:
    channel = channels(allowed_hosts=["localhost"], ssl_context=localhost_only.client_context())

    await channel.send(outgoing(f"https://localhost:{tls_receiver.base}/hook"))

    [got] = tls_receiver.requests
    assert Webhook(SECRET).verify(got.body, got.headers) == PAYLOAD


async def test_https_to_an_address_the_certificate_does_not_name_fails(
    tls_receiver: Receiver, channels: Callable[..., WebhookChannel], localhost_only: Certificate
) -> None:
    channel = channels(allow_private=True, ssl_context=localhost_only.client_context())
    with pytest.raises(DeliveryError) as failed:
        await channel.send(outgoing(f"https://127.0.0.1:{tls_receiver.base}/hook"))
    assert failed.value.permanent is False
    assert tls_receiver.requests == []


async def test_https_with_an_untrusted_certificate_fails(
    tls_receiver: Receiver, channels: Callable[..., WebhookChannel]
) -> None:
    with pytest.raises(DeliveryError, match=r"(?i)certificate|SSL"):
        await channels(allowed_hosts=["localhost"]).send(
            outgoing(f"https://localhost:{tls_receiver.base}/hook")
        )
    assert tls_receiver.requests == []
