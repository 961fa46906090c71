"""Delivery over real SMTP (stdlib smtplib in a worker thread, one connection per message).

`SmtpSender.send` returns when the server accepted the message, or raises one of three errors that
say whose problem the failure is:

- `SmtpUnavailable` (an outage): the connection is refused, times out or drops, or the server
  answers 4xx, before the message was offered (greeting, EHLO, STARTTLS, AUTH). The server cannot
  take any message now; retrying this one later is all there is to do.
- `SmtpMisconfigured` (our configuration): AUTH refused (535) or not offered, STARTTLS not offered
  or failing, any other 5xx before MAIL FROM, or a 5xx to MAIL FROM (the server will not send for
  our From address). No message can go out until an operator fixes the settings.
- `DeliveryError` (this message): 4xx from MAIL FROM on (`permanent=False`, worth a retry) or a 5xx
  to RCPT TO or DATA (`permanent=True`). A connection lost once the message was offered is
  `permanent=False` too: the server may have accepted it, so it counts as an attempt.

The envelope has exactly one recipient, given explicitly: the `To` header is never parsed for
recipients, so no header can add one.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    message_id: str
    sender: str
    sender_name: str
    recipient: str
    reply_to: str | None
    subject: str
    body: str
    headers: tuple[tuple[str, str], ...] = ()

    def to_mime(self) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = formataddr((self.sender_name, self.sender))
        msg["To"] = self.recipient
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["Subject"] = self.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        # A stable Message-ID: if a retry re-sends after a lost acknowledgement, mail systems
        # that dedupe by Message-ID drop the copy.
        msg["Message-ID"] = f"<{self.message_id}@closeloop>"
        # quoted-printable keeps the message 7-bit clean for servers without 8BITMIME.
        msg.set_content(self.body, charset="utf-8", cte="quoted-printable")
        # After set_content, which drops any Content-* header set before it (Content-Language).
        for name, value in self.headers:
            msg[name] = value
        return msg


class SmtpUnavailable(Exception):
    """The SMTP server cannot be reached or cannot take mail now (an outage)."""


class SmtpMisconfigured(Exception):
    """The SMTP server refuses our configuration (credentials, TLS, From address)."""


class DeliveryError(Exception):
    """The server refused this message: for good (`permanent`) or for now."""

    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.permanent = permanent


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"SMTP {code}: {text}"


@dataclass(frozen=True, slots=True)
class SmtpSender:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 15.0

    async def send(self, email: OutgoingEmail) -> None:
        """Hand `email` to the server; raises as the module docstring says."""
        # Built first: a message that cannot be rendered fails before any connection is made.
        payload = email.to_mime().as_bytes(policy=EmailMessage().policy.clone(linesep="\r\n"))
        await asyncio.to_thread(self._send_blocking, email.sender, email.recipient, payload)

    def _send_blocking(self, sender: str, recipient: str, payload: bytes) -> None:
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (smtplib.SMTPException, OSError) as exc:
            raise SmtpUnavailable(f"{type(exc).__name__}: {exc}") from exc
        try:
            self._open_session(smtp)
            self._transfer(smtp, sender, recipient, payload)
        finally:
            # The server has the message (or refused it) by now: a failing QUIT changes nothing.
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _open_session(self, smtp: smtplib.SMTP) -> None:
        """EHLO, STARTTLS and AUTH: failures here concern the server or our settings, never the
        message, which has not been offered yet."""
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username and self.password:
                smtp.login(self.username, self.password)
        except smtplib.SMTPResponseException as exc:
            # 535 and other 5xx (TLS or AUTH refused) need an operator; 4xx (421 shutting down,
            # 454 TLS or AUTH temporarily unavailable) pass by themselves.
            detail = _reply(exc.smtp_code, exc.smtp_error)
            if 500 <= exc.smtp_code < 600:
                raise SmtpMisconfigured(detail) from exc
            raise SmtpUnavailable(detail) from exc
        except (smtplib.SMTPNotSupportedError, ssl.SSLError) as exc:
            # STARTTLS or AUTH not offered, or the certificate does not verify (SSLError is an
            # OSError, so it is caught before the outage case below).
            raise SmtpMisconfigured(f"{type(exc).__name__}: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise SmtpUnavailable(f"{type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _transfer(smtp: smtplib.SMTP, sender: str, recipient: str, payload: bytes) -> None:
        """MAIL FROM, one RCPT TO, DATA: from here on a failure is charged to the message."""
        try:
            code, text = smtp.mail(sender)
            if code != 250:
                if 500 <= code < 600:
                    # The server will not relay for our From address: no message can go out.
                    raise SmtpMisconfigured(f"MAIL FROM refused: {_reply(code, text)}")
                raise DeliveryError(_reply(code, text), permanent=False)
            code, text = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise DeliveryError(
                    f"recipient refused: {_reply(code, text)}", permanent=500 <= code < 600
                )
            code, text = smtp.data(payload)
            if code != 250:
                raise DeliveryError(_reply(code, text), permanent=500 <= code < 600)
        except smtplib.SMTPResponseException as exc:  # smtp.data raises this for a refused DATA
            detail = _reply(exc.smtp_code, exc.smtp_error)
            raise DeliveryError(detail, permanent=500 <= exc.smtp_code < 600) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped or timed out once the message was offered: it may have been accepted.
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
