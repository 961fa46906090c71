"""The email channel (`SmtpPool`) against real SMTP servers on loopback (aiosmtpd, or raw asyncio
servers for greetings aiosmtpd cannot give): connections reused and pooled, each class of
failure, stale connections replaced, TLS both ways with a self-signed certificate, and what
arrives on the server (MIME parts, List-Unsubscribe, hostile text)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from closeloop_common.clock import FixedClock
from closeloop_notifier.adapters.channels import (
    ChannelMisconfigured,
    ChannelUnavailable,
    DeliveryError,
    Outgoing,
)
from closeloop_notifier.adapters.email import SmtpPool, SmtpSettings
from services.notifier.tests.integration.certificates import Certificate, self_signed

SENDER = "feedback@acme.example"
SENT_AT = datetime(2026, 6, 10, 8, 30, tzinfo=UTC)


def outgoing(recipient: str = "anna.nowak@klient.example.pl", **fields: Any) -> Outgoing:
    return Outgoing(
        message_id=str(uuid.uuid4()),
        tenant_id="acme",
        kind="apology",
        recipient=recipient,
        subject=fields.pop("subject", "Przepraszamy za błędną fakturę"),
        text=fields.pop("text", "Dzień dobry,\n\nprzepraszamy.\n"),
        sender=SENDER,
        sender_name="Obsługa klienta Acme",
        **fields,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Recorder:
    """An aiosmtpd handler that records connections, commands and accepted messages, and
    answers or drops as a test scripts it.

    `mail` / `data`: replies to MAIL FROM / DATA (one per command, in order; then accepted).
    `rcpt`: replies to RCPT TO likewise. `drop_mail` / `drop_data`: the numbers (1-based, over
    the server's life) of the MAIL FROM / DATA commands at which the connection is closed
    without a reply. `data_delay`: seconds DATA takes. `password`: AUTH offered, checked.
    """

    def __init__(
        self,
        *,
        mail: list[str] | None = None,
        rcpt: list[str] | None = None,
        data: list[str] | None = None,
        drop_mail: set[int] | None = None,
        drop_data: set[int] | None = None,
        data_delay: float = 0.0,
        password: str | None = None,
    ) -> None:
        self.mail_replies = list(mail or [])
        self.rcpt_replies = list(rcpt or [])
        self.data_replies = list(data or [])
        self.drop_mail = drop_mail or set()
        self.drop_data = drop_data or set()
        self.data_delay = data_delay
        self.password = password
        self.peers: set[tuple[str, int]] = set()
        self.servers: list[Any] = []  # aiosmtpd's per-connection SMTP objects
        self.mails = 0
        self.datas = 0
        self.rsets = 0
        self.noops = 0
        self.quits = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.received: list[tuple[str, list[str], bytes]] = []
        self.port = 0

    @property
    def connections(self) -> int:
        return len(self.peers)

    def messages(self) -> list[EmailMessage]:
        parsed = [
            email.message_from_bytes(c, policy=email.policy.default) for _, _, c in self.received
        ]
        assert all(isinstance(m, EmailMessage) for m in parsed)
        return parsed

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.peers.add(session.peer)
        if server not in self.servers:
            self.servers.append(server)
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self.mails += 1
        if self.mails in self.drop_mail:
            server.transport.close()
            return "421 gone"  # never arrives: the connection is closed
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.datas += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.data_delay:
                await asyncio.sleep(self.data_delay)
            if self.datas in self.drop_data:
                server.transport.close()
                return "421 gone"
            if self.data_replies:
                return self.data_replies.pop(0)
            self.received.append(
                (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
            return "250 Message accepted"
        finally:
            self.in_flight -= 1

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        self.rsets += 1
        return "250 OK"

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        self.noops += 1
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 Bye"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        given = getattr(auth_data, "password", b"")
        if self.password is not None and given == self.password.encode():
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"), dns_names=("localhost",), ips=("127.0.0.1",))


StartSmtp = Callable[..., Recorder]


@pytest.fixture
def start_smtp() -> Iterator[StartSmtp]:
    """`start_smtp(port=None, controller={...}, **script)`: a `Recorder` server on loopback."""
    started: list[Controller] = []

    def start(
        *, port: int | None = None, controller: dict[str, Any] | None = None, **script: Any
    ) -> Recorder:
        handler = Recorder(**script)
        handler.port = port or free_port()
        options = dict(controller or {})
        if handler.password is not None:
            options.setdefault("auth_require_tls", False)
            options["authenticator"] = handler.authenticate
        server = Controller(handler, hostname="127.0.0.1", port=handler.port, **options)
        server.start()
        started.append(server)
        return handler

    yield start
    for server in started:
        server.stop()


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., SmtpPool]]:
    """`pools(port, **settings)`: an `SmtpPool` to 127.0.0.1, closed after the test."""
    made: list[SmtpPool] = []

    def make(port: int, **settings: Any) -> SmtpPool:
        settings.setdefault("timeout", 5)
        settings.setdefault("local_hostname", "notifier.acme.example")
        pool = SmtpPool(
            SmtpSettings(host="127.0.0.1", port=port, **settings), clock=FixedClock(SENT_AT)
        )
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.aclose()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[bytes], Awaitable[int]]]:
    """`await raw_server(greeting)`: a TCP server on loopback that sends `greeting` to each
    connection and closes it; returns its port."""
    servers: list[asyncio.Server] = []

    async def start(greeting: bytes) -> int:
        async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(greeting)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


# -- reuse and pooling -------------------------------------------------------------------------


async def test_one_connection_carries_many_messages(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    pool = pools(server.port, size=4)

    for n in range(25):
        await pool.send(outgoing(f"customer{n}@klient.example.pl"))

    assert server.connections == 1
    assert [rcpt for _, rcpt, _ in server.received] == [
        [f"customer{n}@klient.example.pl"] for n in range(25)
    ]
    assert server.rsets == 0


async def test_pool_opens_connections_only_when_needed_and_never_more_than_its_size(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp(data_delay=0.02)
    pool = pools(server.port, size=3)
    await asyncio.sleep(0)
    assert server.connections == 0  # lazily opened

    recipients = [f"customer{n}@klient.example.pl" for n in range(20)]
    await asyncio.gather(*(pool.send(outgoing(r)) for r in recipients))

    assert server.connections == 3
    assert server.max_in_flight <= 3
    assert server.max_in_flight > 1  # they did run side by side
    assert sorted(r for _, [r], _ in server.received) == sorted(recipients)


async def test_aclose_quits_every_pooled_connection_and_refuses_further_sends(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp(data_delay=0.02)
    pool = pools(server.port, size=2)
    await asyncio.gather(pool.send(outgoing()), pool.send(outgoing()))
    assert server.connections == 2

    await pool.aclose()

    assert server.quits == 2
    with pytest.raises(ChannelUnavailable):
        await pool.send(outgoing())


async def test_cancelled_send_closes_its_connection_and_frees_its_slot(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp(data_delay=30)
    pool = pools(server.port, size=1)
    sending = asyncio.create_task(pool.send(outgoing()))
    async with asyncio.timeout(5):
        while server.in_flight == 0:
            await asyncio.sleep(0.01)

    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending

    server.data_delay = 0
    await pool.send(outgoing("next@klient.example.pl"))
    assert server.connections == 2  # the cancelled one was not reused mid-conversation
    assert [rcpt for _, rcpt, _ in server.received] == [["next@klient.example.pl"]]


# -- stale connections -------------------------------------------------------------------------


async def test_connection_the_server_closed_while_idle_is_replaced_without_an_error(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    pool = pools(server.port, size=1, noop_after=0)  # every reuse is checked with NOOP
    await pool.send(outgoing())
    [first] = server.servers
    first.loop.call_soon_threadsafe(first.transport.close)  # the server's idle timeout

    await pool.send(outgoing("second@klient.example.pl"))

    assert server.connections == 2
    assert [rcpt for _, rcpt, _ in server.received] == [
        ["anna.nowak@klient.example.pl"],
        ["second@klient.example.pl"],
    ]


async def test_reused_connection_checked_with_noop_when_idle(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    pool = pools(server.port, size=1, noop_after=0)
    await pool.send(outgoing())
    await pool.send(outgoing())
    assert (server.connections, server.noops) == (1, 1)

    busy = pools(server.port, size=1)  # noop_after=10 s: a busy connection is not checked
    await busy.send(outgoing())
    await busy.send(outgoing())
    assert server.noops == 1


async def test_reused_connection_dropped_at_mail_from_is_replaced_once_without_an_error(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp(drop_mail={2})  # closed as the second message starts: nothing offered
    pool = pools(server.port, size=1)

    await pool.send(outgoing("first@klient.example.pl"))
    await pool.send(outgoing("second@klient.example.pl"))

    assert server.connections == 2
    assert [rcpt for _, rcpt, _ in server.received] == [
        ["first@klient.example.pl"],
        ["second@klient.example.pl"],
    ]


async def test_reused_connection_answering_421_to_mail_from_is_replaced_once(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    pool = pools(server.port, size=1)
    await pool.send(outgoing())
    server.mail_replies = ["421 4.4.2 Too many messages on this connection"]

    await pool.send(outgoing("second@klient.example.pl"))

    assert server.connections == 2
    assert len(server.received) == 2


async def test_stale_connection_is_replaced_only_once(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp(drop_mail={2, 3})  # the replacement drops too
    pool = pools(server.port, size=1)
    await pool.send(outgoing())

    with pytest.raises(DeliveryError) as failed:
        await pool.send(outgoing())

    assert failed.value.permanent is False
    assert server.connections == 2


async def test_fresh_connection_dropped_at_mail_from_is_a_temporary_failure(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp(drop_mail={1})
    pool = pools(server.port, size=1)

    with pytest.raises(DeliveryError) as failed:
        await pool.send(outgoing())

    assert failed.value.permanent is False
    assert server.connections == 1
    await pool.send(outgoing())  # the slot is free again
    assert len(server.received) == 1


# -- outages and our configuration -------------------------------------------------------------


async def test_server_that_refuses_connections_then_starts_accepting(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    port = free_port()  # nothing listens yet
    pool = pools(port, size=2)

    for _ in range(3):
        with pytest.raises(ChannelUnavailable):
            await pool.send(outgoing())

    server = start_smtp(port=port)
    await pool.send(outgoing())
    assert len(server.received) == 1


async def test_server_that_never_answers_is_unavailable(pools: Callable[..., SmtpPool]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        pool = pools(silent.getsockname()[1], timeout=0.3)
        with pytest.raises(ChannelUnavailable):
            await pool.send(outgoing())


@pytest.mark.parametrize(
    ("greeting", "error"),
    [
        (b"421 4.3.2 Service not available, closing channel\r\n", ChannelUnavailable),
        (b"554 5.7.1 No SMTP service here for you\r\n", ChannelMisconfigured),
        (b"", ChannelUnavailable),  # closed without a greeting
    ],
    ids=["421", "554", "closed"],
)
async def test_greeting_other_than_220_says_whose_problem_it_is(
    raw_server: Callable[[bytes], Awaitable[int]],
    pools: Callable[..., SmtpPool],
    greeting: bytes,
    error: type[Exception],
) -> None:
    pool = pools(await raw_server(greeting))
    with pytest.raises(error):
        await pool.send(outgoing())


async def test_refused_login_is_misconfigured_and_the_right_password_works(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp(password="right")

    with pytest.raises(ChannelMisconfigured, match="535"):
        await pools(server.port, username="closeloop", password="wrong").send(outgoing())
    await pools(server.port, username="closeloop", password="right").send(outgoing())

    assert len(server.received) == 1


async def test_login_to_a_server_without_auth_is_misconfigured(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    with pytest.raises(ChannelMisconfigured, match="AUTH"):
        await pools(server.port, username="closeloop", password="secret").send(outgoing())


async def test_starttls_to_a_server_that_does_not_offer_it_is_misconfigured(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    with pytest.raises(ChannelMisconfigured, match="STARTTLS"):
        await pools(server.port, tls="starttls").send(outgoing())
    assert server.received == []


async def test_sender_address_refused_with_5xx_is_misconfigured(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp(mail=["550 5.7.1 Sender address rejected: not owned by user"])
    with pytest.raises(ChannelMisconfigured, match="550"):
        await pools(server.port).send(outgoing())


# -- refusals of one message -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "permanent", "code"),
    [
        ({"mail": ["451 4.3.0 Temporary local problem"]}, False, "451"),
        ({"rcpt": ["550 5.1.1 No such mailbox"]}, True, "550"),
        ({"rcpt": ["450 4.2.1 Mailbox busy, try later"]}, False, "450"),
        ({"data": ["554 5.6.0 Message content rejected"]}, True, "554"),
        ({"data": ["451 4.7.1 Greylisted, try again"]}, False, "451"),
    ],
    ids=["mail-4xx", "rcpt-5xx", "rcpt-4xx", "data-5xx", "data-4xx"],
)
async def test_refused_message_is_charged_to_that_message_and_the_connection_is_reset_and_kept(
    start_smtp: StartSmtp,
    pools: Callable[..., SmtpPool],
    script: dict[str, Any],
    permanent: bool,
    code: str,
) -> None:
    server = start_smtp(**script)
    pool = pools(server.port, size=1)

    with pytest.raises(DeliveryError) as refused:
        await pool.send(outgoing())
    assert refused.value.permanent is permanent
    assert code in str(refused.value)

    await pool.send(outgoing("next@klient.example.pl"))  # refused then accepted
    assert server.rsets >= 1
    assert server.connections == 1
    assert [rcpt for _, rcpt, _ in server.received] == [["next@klient.example.pl"]]


async def test_connection_lost_during_data_is_a_temporary_failure_and_replaced(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp(drop_data={1})
    pool = pools(server.port, size=1)

    with pytest.raises(DeliveryError) as lost:
        await pool.send(outgoing())
    assert lost.value.permanent is False

    await pool.send(outgoing())
    assert server.connections == 2
    assert len(server.received) == 1


async def test_message_that_cannot_be_written_uses_no_connection(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    with pytest.raises(DeliveryError) as refused:
        await pools(server.port).send(
            outgoing("anna@klient.example.pl\r\nRCPT TO:<x@evil.example>")
        )
    assert refused.value.permanent is True
    assert server.connections == 0


async def test_invalid_sender_is_misconfigured(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    with pytest.raises(ChannelMisconfigured):
        await pools(server.port).send(replace(outgoing(), sender=""))
    assert server.connections == 0


# -- TLS ---------------------------------------------------------------------------------------


async def test_starttls_with_a_trusted_certificate_then_login(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool], certificate: Certificate
) -> None:
    server = start_smtp(
        password="right",
        controller={
            "tls_context": certificate.server_context(),
            "require_starttls": True,
            "auth_require_tls": True,
        },
    )
    pool = pools(
        server.port,
        tls="starttls",
        tls_context=certificate.client_context(),
        username="closeloop",
        password="right",
    )

    await pool.send(outgoing())
    await pool.send(outgoing())

    assert (server.connections, len(server.received)) == (1, 2)


async def test_starttls_with_an_untrusted_certificate_is_misconfigured(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool], certificate: Certificate
) -> None:
    server = start_smtp(
        controller={"tls_context": certificate.server_context(), "require_starttls": True}
    )
    with pytest.raises(ChannelMisconfigured, match=r"(?i)certificate"):
        await pools(server.port, tls="starttls").send(outgoing())  # system CAs only
    assert server.received == []


async def test_implicit_tls_with_a_trusted_certificate(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool], certificate: Certificate
) -> None:
    server = start_smtp(controller={"ssl_context": certificate.server_context()})
    pool = pools(server.port, tls="implicit", tls_context=certificate.client_context())

    await pool.send(outgoing())
    await pool.send(outgoing())

    assert (server.connections, len(server.received)) == (1, 2)


async def test_implicit_tls_without_verification_when_told_so(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool], certificate: Certificate
) -> None:
    server = start_smtp(controller={"ssl_context": certificate.server_context()})
    await pools(server.port, tls="implicit", verify=False).send(outgoing())
    assert len(server.received) == 1


async def test_implicit_tls_with_an_untrusted_certificate_is_misconfigured(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool], certificate: Certificate
) -> None:
    server = start_smtp(controller={"ssl_context": certificate.server_context()})
    with pytest.raises(ChannelMisconfigured):
        await pools(server.port, tls="implicit").send(outgoing())


async def test_implicit_tls_to_a_plain_server_is_misconfigured(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    with pytest.raises(ChannelMisconfigured):
        await pools(server.port, tls="implicit", verify=False).send(outgoing())


# -- what arrives ------------------------------------------------------------------------------


async def test_message_arrives_as_multipart_alternative_with_one_click_unsubscribe(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    url = "https://notifier.acme.example/v1/unsubscribe/" + "gAAAAABm3x_Yq-" * 10
    text = "Dzień dobry,\n.\nFrom the team: a line with a lone dot above.\n"
    html = "<p>Dzień dobry,</p>"
    message = outgoing(
        text=text,
        html=html,
        unsubscribe_url=url,
        reply_to="ewa.zielinska@acme.example",
        headers=(("Content-Language", "pl"),),
    )

    await pools(server.port).send(message)

    [(mail_from, rcpt_tos, _)] = server.received
    assert (mail_from, rcpt_tos) == (SENDER, ["anna.nowak@klient.example.pl"])
    [received] = server.messages()
    assert received.get_content_type() == "multipart/alternative"
    plain, rich = received.iter_parts()
    assert isinstance(plain, EmailMessage)
    assert isinstance(rich, EmailMessage)
    assert plain.get_content().replace("\r\n", "\n") == text  # the dot line survived
    assert rich.get_content().replace("\r\n", "\n") == html + "\n"
    assert received["List-Unsubscribe"] == f"<{url}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["Message-ID"] == f"<{message.message_id}@closeloop>"
    assert received["Date"].datetime == SENT_AT
    assert received["Content-Language"] == "pl"
    assert received["Subject"] == "Przepraszamy za błędną fakturę"


async def test_hostile_subject_and_name_reach_no_one_else_and_add_no_header(
    start_smtp: StartSmtp, pools: Callable[..., SmtpPool]
) -> None:
    server = start_smtp()
    hostile = "Faktura\r\nBcc: thief@evil.example\r\n\r\nfake body"
    message = replace(
        outgoing(subject=hostile, headers=(("X-Closeloop-Comment", hostile),)),
        sender_name=hostile,
    )

    await pools(server.port).send(message)

    [(_, rcpt_tos, _)] = server.received
    assert rcpt_tos == ["anna.nowak@klient.example.pl"]
    [received] = server.messages()
    assert "Bcc" not in received
    assert received["Subject"] == "Faktura Bcc: thief@evil.example fake body"
    assert [a.addr_spec for a in received["From"].addresses] == [SENDER]
    assert received.get_content().replace("\r\n", "\n") == "Dzień dobry,\n\nprzepraszamy.\n"
