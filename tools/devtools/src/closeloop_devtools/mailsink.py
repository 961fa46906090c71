"""A local SMTP sink: accepts every message on 127.0.0.1 and stores it in a Maildir folder.

`closeloop-mailsink --port 1025 --maildir .infra/mail` runs it; `read_mailbox` reads what arrived.
It is a real SMTP server (aiosmtpd), so the notifier's delivery path is the production one.
"""

from __future__ import annotations

import argparse
import mailbox
import signal
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


def read_mailbox(maildir: Path) -> list[EmailMessage]:
    """Every message in the sink's Maildir, oldest first, parsed with the modern email API."""
    if not (maildir / "new").exists():
        return []
    box = mailbox.Maildir(maildir, create=False)
    found: list[tuple[float, EmailMessage]] = []
    for key in box.iterkeys():
        raw = box.get_bytes(key)
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append((box.get_message(key).get_date(), parsed))
    return [m for _, m in sorted(found, key=lambda pair: pair[0])]


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


class MailSink:
    """The sink in a background thread (aiosmtpd's Controller), for tests and the demo."""

    def __init__(self, maildir: Path, *, host: str = "127.0.0.1", port: int = 1025) -> None:
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = maildir
        self._address = (host, port)
        self.controller = self._controller()

    def _controller(self) -> Controller:
        host, port = self._address
        return Controller(Mailbox(self.maildir), hostname=host, port=port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        """Stop listening (a mail server outage); `start` listens again on the same port."""
        self.controller.stop()
        # A stopped controller's event loop is closed: the next start needs a new one.
        self.controller = self._controller()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-mailsink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", type=Path, default=Path(".infra/mail"))
    args = parser.parse_args(argv)
    sink = MailSink(args.maildir, host=args.host, port=args.port)
    sink.start()
    print(f"SMTP sink on {args.host}:{args.port}, storing into {args.maildir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sink.stop()
    return 0
