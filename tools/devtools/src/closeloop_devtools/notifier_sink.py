"""The SMTP sink of `make bench-notifier`: a real SMTP server (aiosmtpd, on uvloop when it is
installed) in a process of its own, that counts and checks what it accepts and writes nothing.

    python -m closeloop_devtools.notifier_sink --port 2525

The notifier talks to it over TCP as to any mail server (`QuickSMTP`: aiosmtpd's protocol, with
its DATA and address reading made cheaper, since the sink shares the machine it measures). For each message (`Tally.accept`) the
sink reads the header block only (no MIME parsing) and checks it has what every notifier email
has: one recipient in the envelope and the same one in `To`, `From`, `Subject`, `Date`,
`MIME-Version`, `multipart/alternative` content, `Content-Language`, `X-Closeloop-Kind` and a
`Message-ID` of the form `<uuid@closeloop>`; a customer message (case replies and campaigns)
also `List-Unsubscribe` and `List-Unsubscribe-Post` (RFC 8058). A message that misses any of
them is still accepted (250) but counted as bad, with the first reasons kept. A Message-ID seen
before is counted as a duplicate.

Control, one line per command on stdin, one JSON line answered on stdout:
- `stats`: accepted, duplicates, bad (and the first reasons), accepted per kind, the loop time
  of the first and last acceptance, and the sink's own CPU seconds;
- `dump PATH`: every accepted message as a TSV line (Message-ID, envelope recipient, kind,
  language, case id, campaign id, acceptance time as `time.time()`), answered with the count;
- `reset`: forget everything (between the runs of a benchmark);
- `quit`: stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from closeloop_notifier.domain.kinds import CUSTOMER_KINDS

MESSAGE_ID = re.compile(
    rb"<[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}@closeloop>"
)
ALWAYS = (b"from", b"to", b"subject", b"date", b"mime-version", b"x-closeloop-kind")
CUSTOMER_KIND_NAMES = frozenset(kind.value.encode() for kind in CUSTOMER_KINDS)
KEPT_REASONS = 20
REPEATED = b"\0repeated"  # not a header name: where `header_block` lists repeated ones


def header_block(content: bytes) -> dict[bytes, bytes]:
    """The message's headers by lower-cased name (folded lines joined; a repeated name keeps
    its first value, and `REPEATED` lists the names seen twice)."""
    end = content.find(b"\r\n\r\n")
    block = content[: end if end >= 0 else len(content)]
    headers: dict[bytes, bytes] = {}
    repeated: list[bytes] = []
    name = b""
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and name:
            headers[name] += b" " + line.strip()
            continue
        raw, sep, value = line.partition(b":")
        if not sep:
            continue
        name = raw.strip().lower()
        if name in headers:
            repeated.append(name)
            name = b""
            continue
        headers[name] = value.strip()
    if repeated:
        headers[REPEATED] = b",".join(repeated)
    return headers


def problems(envelope: Envelope, headers: dict[bytes, bytes]) -> list[str]:
    """What this notifier email misses (see the module docstring); empty when it is whole."""
    found = [f"no {n.decode()}" for n in ALWAYS if not headers.get(n)]
    if len(envelope.rcpt_tos) != 1:
        found.append(f"{len(envelope.rcpt_tos)} envelope recipients")
    elif headers.get(b"to", b"").decode(errors="replace") != envelope.rcpt_tos[0]:
        found.append("To differs from the envelope recipient")
    if not MESSAGE_ID.fullmatch(headers.get(b"message-id", b"")):
        found.append("Message-ID not <uuid@closeloop>")
    if not headers.get(b"content-type", b"").startswith(b"multipart/alternative"):
        found.append("not multipart/alternative")
    if not headers.get(b"content-language"):
        found.append("no Content-Language")
    if headers.get(b"x-closeloop-kind") in CUSTOMER_KIND_NAMES:
        if not headers.get(b"list-unsubscribe", b"").startswith(b"<http"):
            found.append("customer message without List-Unsubscribe")
        if headers.get(b"list-unsubscribe-post") != b"List-Unsubscribe=One-Click":
            found.append("customer message without List-Unsubscribe-Post")
    repeated = headers.get(REPEATED)
    if repeated:
        found.append(f"repeated headers: {repeated.decode()}")
    return found


@dataclass
class Tally:
    """What the sink accepted (see the module docstring)."""

    accepted: int = 0
    duplicates: int = 0
    bad: int = 0
    reasons: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    first_at: float | None = None  # time.time() of the first and last acceptance
    last_at: float | None = None
    seen: dict[bytes, tuple[str, str, str, str, str, float]] = field(default_factory=dict)

    def accept(self, envelope: Envelope) -> None:
        content = envelope.original_content or b""
        headers = header_block(content)
        at = time.time()
        wrong = problems(envelope, headers)
        if wrong:
            self.bad += 1
            if len(self.reasons) < KEPT_REASONS:
                self.reasons.append("; ".join(wrong))
        message_id = headers.get(b"message-id", b"")
        if message_id in self.seen:
            self.duplicates += 1
        kind = headers.get(b"x-closeloop-kind", b"").decode(errors="replace")
        self.seen[message_id] = (
            envelope.rcpt_tos[0] if envelope.rcpt_tos else "",
            kind,
            headers.get(b"content-language", b"").decode(errors="replace"),
            headers.get(b"x-closeloop-case-id", b"").decode(errors="replace"),
            headers.get(b"x-closeloop-campaign-id", b"").decode(errors="replace"),
            at,
        )
        self.kinds[kind] += 1
        self.accepted += 1
        self.first_at = self.first_at or at
        self.last_at = at

    def stats(self) -> dict[str, Any]:
        usage = time.process_time()
        return {
            "accepted": self.accepted,
            "distinct": len(self.seen),
            "duplicates": self.duplicates,
            "bad": self.bad,
            "reasons": self.reasons,
            "kinds": dict(self.kinds),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "cpu": usage,
        }

    def dump(self, path: Path) -> int:
        with path.open("w", encoding="utf-8") as out:
            for message_id, (to, kind, language, case, campaign, at) in self.seen.items():
                fields = (message_id.decode(), to, kind, language, case, campaign, f"{at:.6f}")
                out.write("\t".join(fields) + "\n")
        return len(self.seen)


_PLAIN_PATH = re.compile(r"<([^<>@\s]+@[^<>@\s]+)>(.*)")
_END_OF_DATA = b"\r\n.\r\n"


class QuickSMTP(SMTP):
    """aiosmtpd's server with two of its slowest steps done faster, same protocol: a plain
    `<local@domain>` path is read with a regex (anything else goes to aiosmtpd's full address
    parser), and DATA is read in chunks up to `CRLF.CRLF` instead of one line at a time.
    Without PIPELINING (not offered) a client waits for the reply to DATA's end, so bytes after
    it break the protocol: the connection is closed. Lines are not limited to 1,000 octets and
    a message over the size limit is refused after it was read (552), as aiosmtpd does."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_PATH.fullmatch(arg.strip())
        if plain:
            return plain.group(1), plain.group(2)
        found: tuple[str | None, str | None] = super()._getaddr(arg)
        return found

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        received = bytearray(b"\r\n")  # so that an empty message ends with CRLF.CRLF too
        while not received.endswith(_END_OF_DATA):
            chunk = await self._reader.read(65536)
            if not chunk:
                return  # the connection was closed
            received += chunk
            if _END_OF_DATA in received[:-5]:
                self._writer.close()  # more than the message: not ours to guess
                return
        content = bytes(received[2:-3]).replace(b"\r\n..", b"\r\n.")
        if content.startswith(b".."):
            content = content[1:]
        if self.data_size_limit and len(content) > self.data_size_limit:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("552 Error: Too much mail data")
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)


class CountingHandler:
    """aiosmtpd's handler: every message is accepted and counted, none is stored."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.tally.accept(envelope)
        return "250 OK"


async def control(tally: Tally, stop: asyncio.Event) -> None:
    """The stdin/stdout command loop (module docstring)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not stop.is_set():
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        command, _, argument = line.partition(" ")
        answer: dict[str, Any]
        if command == "stats":
            answer = tally.stats()
        elif command == "dump":
            answer = {"lines": tally.dump(Path(argument))}
        elif command == "reset":
            fresh = Tally()
            for name in ("accepted", "duplicates", "bad", "reasons", "kinds", "first_at"):
                setattr(tally, name, getattr(fresh, name))
            tally.last_at, tally.seen = None, {}
            answer = {"reset": True}
        else:
            answer = {"error": f"unknown command {command!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    stop.set()


async def serve(host: str, port: int) -> None:
    tally = Tally()
    handler = CountingHandler(tally)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        # A fixed host name: aiosmtpd would otherwise look up this host's FQDN per connection.
        lambda: QuickSMTP(handler, hostname="bench-sink", ident="closeloop bench sink", loop=loop),
        host=host,
        port=port,
    )
    sys.stdout.write(json.dumps({"listening": port}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    try:
        await control(tally, stop)
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notifier_sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    args = parser.parse_args(argv)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


class SinkProcess:
    """The sink run by a benchmark: started on `port`, driven by its control commands."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "closeloop_devtools.notifier_sink", "--port", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        ready = self._answer()
        if ready.get("listening") != port:
            raise RuntimeError(f"the SMTP sink did not start: {ready}")

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the SMTP sink exited with {self.proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self._answer()

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def reset(self) -> None:
        self.command("reset")

    def dump(self, path: Path) -> list[Accepted]:
        self.command(f"dump {path}")
        return read_dump(path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                self.command("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@dataclass(frozen=True, slots=True)
class Accepted:
    """One message the sink accepted (a line of its dump)."""

    message_id: str  # the uuid inside `<...@closeloop>`
    recipient: str
    kind: str
    language: str
    case_id: str
    campaign_id: str
    at: float  # time.time() when accepted


def read_dump(path: Path) -> list[Accepted]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        message_id, recipient, kind, language, case_id, campaign_id, at = line.split("\t")
        uuid_part = message_id.removeprefix("<").removesuffix(">").partition("@")[0]
        found.append(
            Accepted(uuid_part, recipient, kind, language, case_id, campaign_id, float(at))
        )
    return found


if __name__ == "__main__":
    raise SystemExit(main())
