"""The SMTP sink of `make bench-notifier`: it receives what a client sends, byte for byte, and
counts an email as bad or as a duplicate when it is one. Loopback only: no broker, no database."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session

from closeloop_devtools.notifier_sink import CountingHandler, QuickSMTP, Tally
from closeloop_notifier.adapters.channels import Outgoing
from closeloop_notifier.adapters.email import email_bytes

SENT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def notifier_email(recipient: str = "anna@klient.example.pl", **changes: object) -> bytes:
    message = Outgoing(
        message_id=str(uuid.uuid4()),
        tenant_id="acme",
        kind="apology",
        recipient=recipient,
        subject="Przepraszamy",
        text=".a line that starts with a dot\n.\n..\nthe end\n",
        html="<p>Przepraszamy</p>",
        sender="feedback@acme.example",
        sender_name="Acme",
        unsubscribe_url="https://notifier.example/v1/unsubscribe/abc",
        headers=(("X-Closeloop-Kind", "apology"), ("Content-Language", "pl")),
    )
    return email_bytes(replace(message, **changes), date=SENT)  # type: ignore[arg-type]


class Keeping(CountingHandler):
    """The sink's handler, also keeping each message's bytes as the server read them."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(tally)
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.contents.append(envelope.original_content or b"")
        return await super().handle_DATA(server, session, envelope)


async def received(*messages: tuple[bytes, str], keep: list[bytes] | None = None) -> Tally:
    """What a sink on a free loopback port counted after `messages` were sent to it (their
    bytes as read into `keep`)."""
    tally = Tally()
    handler = Keeping(tally)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: QuickSMTP(handler, hostname="sink", loop=loop), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        for content, recipient in messages:
            await aiosmtplib.send(
                content,
                sender="feedback@acme.example",
                recipients=[recipient],
                hostname="127.0.0.1",
                port=port,
            )
    finally:
        server.close()
        await server.wait_closed()
    if keep is not None:
        keep.extend(handler.contents)
    return tally


async def test_the_sink_keeps_the_message_as_sent_dot_lines_included() -> None:
    content = notifier_email()
    kept: list[bytes] = []
    tally = await received((content, "anna@klient.example.pl"), keep=kept)
    assert kept == [content]  # dot-stuffed by the client, unstuffed by the sink
    assert (tally.accepted, tally.bad, tally.duplicates) == (1, 0, 0), tally.reasons
    [(to, kind, language, _, _, _)] = tally.seen.values()
    assert (to, kind, language) == ("anna@klient.example.pl", "apology", "pl")


async def test_the_same_message_id_twice_is_a_duplicate() -> None:
    content = notifier_email()
    tally = await received((content, "anna@klient.example.pl"), (content, "anna@klient.example.pl"))
    assert (tally.accepted, tally.duplicates, len(tally.seen)) == (2, 1, 1)


async def test_an_email_whose_to_is_not_its_envelope_recipient_is_bad() -> None:
    tally = await received((notifier_email(), "someone.else@example.com"))
    assert tally.bad == 1
    assert "To differs from the envelope recipient" in tally.reasons[0]


async def test_a_customer_email_without_list_unsubscribe_is_bad() -> None:
    tally = await received((notifier_email(unsubscribe_url=None), "anna@klient.example.pl"))
    assert tally.bad == 1
    assert "List-Unsubscribe" in tally.reasons[0]
