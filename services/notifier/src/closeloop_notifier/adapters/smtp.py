"""Delivery over real SMTP (stdlib smtplib in a worker thread, one connection per message)."""

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


class DeliveryError(Exception):
    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class SmtpSender:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 15.0

    async def send(self, email: OutgoingEmail) -> None:
        await asyncio.to_thread(self._send_blocking, email)

    def _send_blocking(self, email: OutgoingEmail) -> None:
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username and self.password:
                smtp.login(self.username, self.password)
            smtp.send_message(email.to_mime())
        except smtplib.SMTPRecipientsRefused as exc:
            # Final only if every refusal is 5xx; a 4xx (greylisting, mailbox busy) is retried.
            codes = [code for code, _ in exc.recipients.values()]
            permanent = all(500 <= code < 600 for code in codes)
            raise DeliveryError(
                f"recipient refused: {exc.recipients}", permanent=permanent
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # 5xx replies are final (bad address, policy); 4xx are worth retrying.
            raise DeliveryError(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=500 <= exc.smtp_code < 600
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
        finally:
            # The server has the message (or refused it) by now: a failing QUIT changes nothing.
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
