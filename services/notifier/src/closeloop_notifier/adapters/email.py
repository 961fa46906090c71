"""Email over SMTP (aiosmtplib), through a pool of reused connections: the `email` channel.

`SmtpPool.send` returns when the server accepted the message, or raises (see `channels`):

- `ChannelUnavailable` (an outage): the connection is refused, times out or drops, or the server
  answers 4xx, before the message was offered (greeting, EHLO, STARTTLS, AUTH). The server cannot
  take any message now; retrying this one later is all there is to do.
- `ChannelMisconfigured` (our configuration): AUTH refused (535) or not offered, STARTTLS not
  offered, a TLS handshake or certificate that fails, any other 5xx before MAIL FROM (a 554
  greeting included), or a 5xx to MAIL FROM (the server will not send for our From address);
  also a From address that is not a plain mailbox. No message can go out until an operator
  fixes the settings.
- `DeliveryError` (this message): 4xx from MAIL FROM on (`permanent=False`, worth a retry) or a
  5xx to RCPT TO or DATA (`permanent=True`). A connection lost or timed out from MAIL FROM on is
  `permanent=False` too: once the message was offered the server may have accepted it, so it
  counts as an attempt. A message that cannot be written as a safe email (an address or header
  with a line break, say) is `permanent=True` before any connection is used.

The pool: at most `size` connections, opened when first needed and reused across messages (a
last-in-first-out queue of slots: a slot holds an open connection or nothing yet; the connection
used last is taken first, so a trickle of messages keeps to one connection and a new one is
opened only when all open ones are busy). A connection the server closed while it sat idle is
replaced once, without charging the message: noticed when the transport is gone, when a NOOP
fails (a connection idle for `noop_after` seconds is checked first), or when MAIL FROM on a
reused connection meets a disconnect or a 421 (nothing was offered yet). After a
refused transaction the connection is reset (RSET) and kept; one whose state is unknown (a
timeout, a failed RSET, a cancelled send) is closed.

SMTP PIPELINING is not used: aiosmtplib (5.x) writes one command and waits for its reply, and
offers no way to send MAIL, RCPT and DATA together. Throughput comes from the pool's concurrent
connections instead; on the local network a round trip is well under a millisecond.

The envelope has exactly one recipient, given explicitly: headers are never parsed for
recipients, so no header can add one. Header injection: the subject, names and extra header values
lose every line break and control character (a hostile subject stays one line); addresses, the
Message-ID and the unsubscribe URL with such characters are refused; extra header names must be
plain field names and may not replace a header this module writes.
"""

from __future__ import annotations

import asyncio
import binascii
import email
import email.policy
import re
import secrets
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime
from functools import lru_cache
from typing import Literal

import aiosmtplib

from closeloop_common.clock import Clock, SystemClock
from closeloop_notifier.adapters.channels import (
    ChannelMisconfigured,
    ChannelUnavailable,
    DeliveryError,
    Outgoing,
)

TlsMode = Literal["none", "starttls", "implicit"]

# A plain ASCII mailbox as `closeloop_common.emails` writes it: nothing that could end a header
# line, start another address or close the angle brackets of an envelope path.
_MAILBOX = re.compile(r"[!#-'*+\-/-9=?A-Z^-~.]{1,64}@[A-Za-z0-9.-]{1,253}")
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._\-+=]{1,200}")
_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")  # RFC 5322 field name: printable ASCII but ':'
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # Unicode Cc, Zl and Zp
_URL = re.compile(r"https?://[!-~]+")
_OWN_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "sender",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "return-path",
    }
)


class _VerbatimHeader(UnstructuredHeader, BaseHeader):
    """A header written on one line as it is. The folder would turn a long URL (no space to
    fold at) into RFC 2047 encoded words, which no mail client decodes in List-Unsubscribe."""

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", _VerbatimHeader)
# What `build_email` parses the written bytes with: CRLF line ends, and List-Unsubscribe kept
# on one line if the message is written again.
_POLICY = email.policy.SMTP.clone(header_factory=_HEADERS)


def one_line(text: str) -> str:
    """`text` with each run of line breaks and control characters (CR, LF, U+2028, tab, NUL...)
    turned into one space: a value that can never start a new header line."""
    return _BREAKS.sub(" ", text).strip()


def _mailbox(address: str, what: str) -> str:
    if not _MAILBOX.fullmatch(address):
        raise DeliveryError(f"{what} is not a plain ASCII mailbox: {address!r}", permanent=True)
    return address


# Header writing (`email_bytes`). A value goes out as it is when it is plain ASCII that cannot
# be mistaken for anything else, else as RFC 2047 encoded words ("Q" encoding of UTF-8, each
# word at most 75 characters, one per folded line), which every mail client decodes.
_LINE = 78  # RFC 5322's recommended line length
_WORD = 75  # RFC 2047: an encoded word's length at most
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9' -]+")  # a display name safe without quotes
_PRINTABLE = re.compile(r"[ -~]*")
# Q encoding of a phrase (RFC 2047, 5 (3)): these stay, space is "_", all else is =XX.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q = [chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256)]


def _encoded_words(text: str, first: int) -> list[str]:
    """`text` as UTF-8 Q encoded words; the first at most `first` characters long (the room
    left by the header's name), the others `_WORD`. Never splits a character."""
    words: list[str] = []
    current: list[str] = []
    size, room = 0, first - 12  # "=?utf-8?q?" + "?="
    for char in text:
        encoded = "".join(_Q[b] for b in char.encode("utf-8"))
        if size + len(encoded) > room and current:
            words.append("=?utf-8?q?" + "".join(current) + "?=")
            current, size, room = [], 0, _WORD - 12
        current.append(encoded)
        size += len(encoded)
    if current:
        words.append("=?utf-8?q?" + "".join(current) + "?=")
    return words


def _encoded_phrase(name: str, first: int) -> list[str]:
    """A display name as encoded words, split only where it has a space: in a phrase, mail
    readers (Python's parser among them) keep the space between two encoded words, which in
    unstructured text they drop. A run of spaces keeps all but one inside the next word; a
    word too long for one encoded word is split (a space appears there when read)."""
    words: list[str] = []
    carried = ""
    for token in name.split(" "):
        if not token:
            carried += " "
            continue
        words += _encoded_words(carried + token, first if not words else _WORD)
        carried = ""
    return words


@lru_cache(maxsize=4096)
def _unstructured(name: str, value: str) -> str:
    """`Name: value` ending in CRLF, folded; `value` is one line (`one_line`)."""
    if _PRINTABLE.fullmatch(value) and "=?" not in value and len(name) + len(value) < 990:
        lines, line = [], f"{name}:"
        for word in value.split(" "):
            if len(line) + 1 + len(word) > _LINE and line.strip() and not line.endswith(":"):
                lines.append(line)
                line = ""
            line += " " + word
        return "\r\n".join([*lines, line]) + "\r\n"
    words = _encoded_words(value, _LINE - len(name) - 2)
    return f"{name}: " + "\r\n ".join(words) + "\r\n"


@lru_cache(maxsize=1024)
def _from_header(name: str, address: str) -> str:
    """`From: name <address>` ending in CRLF; `name` is one line, `address` a plain mailbox."""
    if not name:
        return f"From: {address}\r\n"
    if _PLAIN_PHRASE.fullmatch(name):
        phrase = [name]
    elif _PRINTABLE.fullmatch(name) and "=?" not in name:
        phrase = ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    else:
        phrase = _encoded_phrase(name, _LINE - len("From: "))
    return "From: " + "\r\n ".join([*phrase, f"<{address}>"]) + "\r\n"


def _quoted_printable(text: str) -> bytes:
    """`text` as UTF-8 quoted-printable with CRLF line ends, ending in one (7-bit clean; lines
    of at most 76 characters with soft breaks)."""
    lines = text.encode("utf-8").splitlines()
    encoded = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True)
    return encoded.replace(b"\n", b"\r\n")


def _part(subtype: str, text: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode() + _quoted_printable(text)


def email_bytes(message: Outgoing, *, date: datetime) -> bytes:
    """The message for `message` as it goes on the wire (multipart/alternative when it has
    HTML), or `DeliveryError(permanent=True)` when it cannot be written safely.

    Written directly, not through `email.message`: the same headers and parts in a tenth of
    the time (the stdlib's header folding was most of a message's cost)."""
    sender = _mailbox(message.sender, "sender")
    recipient = _mailbox(message.recipient, "recipient")
    if not _MESSAGE_ID.fullmatch(message.message_id):
        raise DeliveryError(
            f"message id unusable in a header: {message.message_id!r}", permanent=True
        )
    head = [_from_header(one_line(message.sender_name), sender), f"To: {recipient}\r\n"]
    if message.reply_to:
        head.append(f"Reply-To: {_mailbox(message.reply_to, 'reply-to address')}\r\n")
    head.append(_unstructured("Subject", one_line(message.subject)))
    head.append(f"Date: {format_datetime(date)}\r\n")
    # A stable Message-ID: if a retry re-sends after a lost acknowledgement, mail systems that
    # dedupe by Message-ID drop the copy.
    head.append(f"Message-ID: <{message.message_id}@closeloop>\r\n")
    if message.unsubscribe_url is not None:
        url = message.unsubscribe_url
        if not _URL.fullmatch(url) or len(url) > 900 or any(c in url for c in "<>"):
            raise DeliveryError("unsubscribe URL unusable in a header", permanent=True)
        # One line, whatever its length: clients do not decode a folded or encoded URL.
        head.append(f"List-Unsubscribe: <{url}>\r\n")
        head.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")  # RFC 8058
    extra = []
    for name, value in message.headers:
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _OWN_HEADERS:
            raise DeliveryError(f"header name not allowed: {name!r}", permanent=True)
        extra.append(_unstructured(name, one_line(value)))
    # quoted-printable keeps the message 7-bit clean for servers without 8BITMIME.
    if message.html is None:
        body = _part("plain", message.text)
        head += [body[: body.index(b"\r\n\r\n") + 2].decode(), "MIME-Version: 1.0\r\n", *extra]
        return "".join(head).encode() + b"\r\n" + body[body.index(b"\r\n\r\n") + 4 :]
    # "==" never occurs in quoted-printable text (every "=" is followed by hex or a line end).
    boundary = f"==closeloop-{secrets.token_hex(16)}"
    head += [
        "MIME-Version: 1.0\r\n",
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n',
        *extra,
        "\r\n",
    ]
    # The line end before a delimiter belongs to the delimiter, not to the part before it.
    return b"".join(
        [
            "".join(head).encode(),
            f"--{boundary}\r\n".encode(),
            _part("plain", message.text),
            f"\r\n--{boundary}\r\n".encode(),
            _part("html", message.html),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )


def build_email(message: Outgoing, *, date: datetime) -> EmailMessage:
    """`email_bytes` parsed back into an `EmailMessage` (tests and tools read it that way)."""
    parsed = email.message_from_bytes(email_bytes(message, date=date), policy=_POLICY)
    assert isinstance(parsed, EmailMessage)
    return parsed


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    tls: TlsMode = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 15.0  # per command; a server this slow counts as down
    size: int = 4  # connections at most
    noop_after: float = 10.0  # seconds idle after which a connection is checked with NOOP
    tls_context: ssl.SSLContext | None = None  # None: the system's CAs, host name checked
    verify: bool = True  # False only for tests and sinks: no certificate check at all
    local_hostname: str | None = None  # the EHLO name; None: this host's FQDN

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("the pool needs at least one connection")
        if self.tls not in ("none", "starttls", "implicit"):
            raise ValueError(f"unknown TLS mode {self.tls!r}")


class _Stale(Exception):
    """A reused connection turned out closed before anything was offered on it."""


@dataclass(slots=True)
class _Connection:
    smtp: aiosmtplib.SMTP
    idle_since: float  # loop time when it last finished a transaction


def _reply(code: int, text: str) -> str:
    return f"SMTP {code}: {text}"


class SmtpPool:
    """The `email` channel: `send` over at most `settings.size` pooled SMTP connections."""

    name = "email"

    def __init__(self, settings: SmtpSettings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock: Clock = clock or SystemClock()
        self._slots: asyncio.LifoQueue[_Connection | None] = asyncio.LifoQueue()
        for _ in range(settings.size):
            self._slots.put_nowait(None)
        self._closed = False

    async def send(self, message: Outgoing) -> None:
        """Deliver `message` to its one recipient; raises as the module docstring says."""
        if not _MAILBOX.fullmatch(message.sender):
            raise ChannelMisconfigured(f"sender is not a plain ASCII mailbox: {message.sender!r}")
        # Built first: a message that cannot be written fails before a connection is taken.
        content = email_bytes(message, date=self._clock.now())
        if self._closed:
            raise ChannelUnavailable("the SMTP pool is closed")
        slot = await self._slots.get()
        connection = slot
        try:
            if self._closed:
                raise ChannelUnavailable("the SMTP pool is closed")
            connection = await self._ready(slot)
            try:
                await self._transfer(
                    connection,
                    message.sender,
                    message.recipient,
                    content,
                    reused=connection is slot,
                )
            except _Stale:
                connection.smtp.close()
                connection = await self._open()
                await self._transfer(
                    connection, message.sender, message.recipient, content, reused=False
                )
        except (DeliveryError, ChannelMisconfigured, ChannelUnavailable):
            raise  # a refused transaction leaves the connection reset; a broken one is closed
        except BaseException:
            # Cancelled mid-conversation (or a bug): the connection's state is unknown.
            if connection is not None:
                connection.smtp.close()
            raise
        finally:
            self._release(connection)

    async def _ready(self, slot: _Connection | None) -> _Connection:
        """`slot`'s connection if it is still alive, else a new one."""
        if slot is None:
            return await self._open()
        if slot.smtp.is_connected and self._idle_for(slot) >= self.settings.noop_after:
            try:
                await slot.smtp.noop()
            except (aiosmtplib.SMTPException, OSError):
                slot.smtp.close()
        if not slot.smtp.is_connected:
            return await self._open()
        return slot

    def _idle_for(self, connection: _Connection) -> float:
        return asyncio.get_running_loop().time() - connection.idle_since

    def _release(self, slot: _Connection | None) -> None:
        if slot is not None:
            if self._closed or not slot.smtp.is_connected:
                slot.smtp.close()
                slot = None
            else:
                slot.idle_since = asyncio.get_running_loop().time()
        self._slots.put_nowait(slot)

    async def _open(self) -> _Connection:
        """Connect, EHLO, STARTTLS and AUTH: failures here concern the server or our settings,
        never the message, which has not been offered yet."""
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout,
            use_tls=s.tls == "implicit",
            start_tls=False,
            validate_certs=s.verify,
            tls_context=s.tls_context,
            local_hostname=s.local_hostname,
        )
        try:
            await smtp.connect()
            await _ehlo(smtp)
            if s.tls == "starttls":
                await smtp.starttls()
                await _ehlo(smtp)
            if s.username:
                await smtp.login(s.username, s.password or "")
        except BaseException as exc:
            smtp.close()
            if isinstance(exc, Exception):
                raise _session_error(exc) from exc
            raise
        return _Connection(smtp=smtp, idle_since=asyncio.get_running_loop().time())

    async def _transfer(
        self, connection: _Connection, sender: str, recipient: str, content: bytes, *, reused: bool
    ) -> None:
        """MAIL FROM, one RCPT TO, DATA: from here on a failure is charged to the message."""
        smtp = connection.smtp
        options = [f"SIZE={len(content)}"] if smtp.supports_extension("size") else []
        try:
            try:
                await _mail_from(smtp, sender, options)
            except aiosmtplib.SMTPSenderRefused as exc:
                if reused and exc.code == 421:
                    raise _Stale from exc  # "closing": an idle connection the server gave up
                if 500 <= exc.code < 600:
                    # The server will not relay for our From address: no message can go out.
                    raise ChannelMisconfigured(
                        f"MAIL FROM refused: {_reply(exc.code, exc.message)}"
                    ) from exc
                raise DeliveryError(_reply(exc.code, exc.message), permanent=False) from exc
            except ConnectionError as exc:  # SMTPServerDisconnected included
                if reused:
                    raise _Stale from exc
                raise
            try:
                await _rcpt_to(smtp, recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                raise DeliveryError(
                    f"recipient refused: {_reply(exc.code, exc.message)}",
                    permanent=500 <= exc.code < 600,
                ) from exc
            try:
                await smtp.data(content)
            except aiosmtplib.SMTPDataError as exc:
                raise DeliveryError(
                    _reply(exc.code, exc.message), permanent=500 <= exc.code < 600
                ) from exc
        except (DeliveryError, ChannelMisconfigured):
            await _reset(smtp)
            raise
        except aiosmtplib.SMTPResponseException as exc:  # a malformed or unexpected reply
            smtp.close()
            raise DeliveryError(_reply(exc.code, exc.message), permanent=False) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Dropped or timed out once the message was offered: it may have been accepted.
            smtp.close()
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc

    async def aclose(self) -> None:
        """Say QUIT on every idle connection; one still sending is closed when it comes back."""
        self._closed = True
        while not self._slots.empty():
            slot = self._slots.get_nowait()
            if slot is not None:
                try:
                    await slot.smtp.quit()
                except (aiosmtplib.SMTPException, OSError):
                    slot.smtp.close()


async def _mail_from(smtp: aiosmtplib.SMTP, sender: str, options: list[str]) -> None:
    """MAIL FROM, as aiosmtplib's `mail` sends it and with its error, without its re-parsing of
    the address as RFC 5322 text (half of a message's cost in aiosmtplib): the sender is a
    plain mailbox already (`send` checked it), so `<sender>` is its path as it is."""
    response = await smtp.execute_command(
        b"MAIL", b"FROM:<" + sender.encode("ascii") + b">", *(o.encode("ascii") for o in options)
    )
    if response.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)


async def _rcpt_to(smtp: aiosmtplib.SMTP, recipient: str) -> None:
    """RCPT TO, as aiosmtplib's `rcpt` sends it; the recipient is a plain mailbox already
    (`email_bytes` checked it)."""
    response = await smtp.execute_command(b"RCPT", b"TO:<" + recipient.encode("ascii") + b">")
    if response.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
        raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)


async def _ehlo(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, falling back to HELO for a server that does not speak ESMTP."""
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    """RSET after a refused transaction, so the connection can take the next message; a
    connection that cannot be reset is closed."""
    if not smtp.is_connected:
        return
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


def _session_error(exc: Exception) -> Exception:
    """What a failure while opening a session means (module docstring)."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # A 554 greeting, 535 and other 5xx (TLS or AUTH refused) need an operator; 4xx (421
        # shutting down, 454 TLS or AUTH temporarily unavailable) pass by themselves.
        detail = _reply(exc.code, exc.message)
        if 500 <= exc.code < 600:
            return ChannelMisconfigured(detail)
        return ChannelUnavailable(detail)
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
        # The handshake or the certificate failed (implicit TLS wraps it in a connect error):
        # the TLS settings or the server's certificate need fixing.
        return ChannelMisconfigured(detail)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError):
        return ChannelUnavailable(detail)
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return ChannelUnavailable(detail)
    if isinstance(exc, aiosmtplib.SMTPException):
        # STARTTLS or AUTH not offered, no AUTH mechanism in common.
        return ChannelMisconfigured(detail)
    return ChannelUnavailable(detail)  # OSError, TimeoutError: the server cannot be reached
