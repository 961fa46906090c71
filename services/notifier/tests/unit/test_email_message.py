"""The MIME message the email channel writes: its parts, its headers, List-Unsubscribe, and
hostile text that must never become a header of its own."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage, MIMEPart

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_notifier.adapters.channels import DeliveryError, Outgoing
from closeloop_notifier.adapters.email import build_email, one_line

SENT = datetime(2026, 6, 10, 8, 30, tzinfo=UTC)
UNSUBSCRIBE = "https://notifier.acme.example/v1/unsubscribe/" + "gAAAAABm3x_Yq-" * 12
MESSAGE = Outgoing(
    message_id="0195f0c2-7d1e-7c3a-9d4b-2f1e8a7b6c5d",
    tenant_id="acme",
    kind="apology",
    recipient="anna.nowak@klient.example.pl",
    subject="Przepraszamy za błędną fakturę",
    text="Dzień dobry,\n\nprzepraszamy. Zadzwonimy jutro.\n",
    sender="feedback@acme.example",
    sender_name="Obsługa klienta Acme",
    reply_to="ewa.zielinska@acme.example",
    headers=(("Content-Language", "pl"), ("X-Closeloop-Case-Id", "case-1")),
)
HEADERS = [
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
    "Content-Language",
    "X-Closeloop-Case-Id",
]


def wire(message: Outgoing) -> bytes:
    return build_email(message, date=SENT).as_bytes()


def parsed(message: Outgoing) -> EmailMessage:
    received = email.message_from_bytes(wire(message), policy=email.policy.default)
    assert isinstance(received, EmailMessage)
    return received


def content(part: MIMEPart) -> str:
    """A text part's content with the wire's CRLF line ends back as LF."""
    text: str = part.get_content()
    return text.replace("\r\n", "\n")


def test_text_only_message_is_one_quoted_printable_utf8_part() -> None:
    received = parsed(MESSAGE)
    assert received.get_content_type() == "text/plain"
    assert received.get_content_charset() == "utf-8"
    assert received["Content-Transfer-Encoding"] == "quoted-printable"
    assert content(received) == MESSAGE.text
    assert wire(MESSAGE).isascii()  # 7-bit clean: no 8BITMIME needed


def test_message_with_html_is_multipart_alternative_text_first() -> None:
    html = "<p>Dzień dobry,</p><p>przepraszamy.</p>"
    received = parsed(replace(MESSAGE, html=html))
    assert received.get_content_type() == "multipart/alternative"
    parts = list(received.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [content(p) for p in parts] == [MESSAGE.text, html + "\n"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert received["Content-Language"] == "pl"  # on the whole message, not lost to the parts


def test_headers_name_the_sender_recipient_owner_and_a_stable_message_id() -> None:
    received = parsed(MESSAGE)
    assert list(received.keys()) == HEADERS
    [sender] = received["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "Obsługa klienta Acme",
        "feedback@acme.example",
    )
    assert received["To"] == "anna.nowak@klient.example.pl"
    assert received["Reply-To"] == "ewa.zielinska@acme.example"
    assert received["Subject"] == "Przepraszamy za błędną fakturę"
    assert received["Date"].datetime == SENT
    assert received["Message-ID"] == "<0195f0c2-7d1e-7c3a-9d4b-2f1e8a7b6c5d@closeloop>"
    assert parsed(MESSAGE)["Message-ID"] == received["Message-ID"]  # the same on a retry


def test_message_without_reply_to_has_no_reply_to_header() -> None:
    assert "Reply-To" not in parsed(replace(MESSAGE, reply_to=None))


def test_unsubscribe_url_gives_one_click_list_unsubscribe_headers_on_one_line() -> None:
    raw = wire(replace(MESSAGE, unsubscribe_url=UNSUBSCRIBE))
    assert f"\r\nList-Unsubscribe: <{UNSUBSCRIBE}>\r\n".encode() in raw
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
    assert "List-Unsubscribe" not in parsed(MESSAGE)


@pytest.mark.parametrize(
    "hostile",
    [
        "Przepraszamy\r\nBcc: thief@evil.example",
        "Przepraszamy\nBcc: thief@evil.example",
        "Przepraszamy\rBcc: thief@evil.example",
        "Przepraszamy\u2028Bcc: thief@evil.example",
        "Przepraszamy\r\n\r\n<h1>a body of our own</h1>",
        "Przepraszamy\x00\x0bBcc: thief@evil.example",
        "=?utf-8?q?Bcc=3A_thief=40evil=2Eexample?=\r\nBcc: thief@evil.example",
    ],
)
def test_line_breaks_in_subject_name_and_header_values_never_make_a_header(hostile: str) -> None:
    message = replace(
        MESSAGE,
        subject=hostile,
        sender_name=hostile,
        headers=(("Content-Language", hostile), ("X-Closeloop-Case-Id", hostile)),
    )
    received = parsed(message)

    assert list(received.keys()) == HEADERS
    assert "Bcc" not in received
    assert "\n" not in received["Subject"]
    assert "\r" not in received["Subject"]
    assert [a.addr_spec for a in received["From"].addresses] == ["feedback@acme.example"]
    assert content(received) == MESSAGE.text


@given(subject=st.text(max_size=300), name=st.text(max_size=80))
def test_any_subject_and_sender_name_stay_inside_their_own_headers(subject: str, name: str) -> None:
    received = parsed(replace(MESSAGE, subject=subject, sender_name=name))
    assert list(received.keys()) == HEADERS
    assert [a.addr_spec for a in received["From"].addresses] == ["feedback@acme.example"]
    assert received["To"] == MESSAGE.recipient
    assert content(received) == MESSAGE.text


def test_one_line_turns_each_run_of_breaks_and_controls_into_one_space() -> None:
    assert one_line(" a\r\n\tb\u2029c\x85d ") == "a b c d"


@pytest.mark.parametrize(
    "change",
    [
        {"recipient": "anna@klient.example.pl\r\nBcc: thief@evil.example"},
        {"recipient": "anna@klient.example.pl, thief@evil.example"},
        {"recipient": "Anna <anna@klient.example.pl>"},
        {"recipient": "anna@żółw.pl"},  # not normalised: IDNA first
        {"recipient": ""},
        {"reply_to": "ewa@acme.example\r\nBcc: thief@evil.example"},
        {"message_id": "x>\r\nBcc: thief@evil.example"},
        {"message_id": "a b"},
        {"unsubscribe_url": UNSUBSCRIBE + "\r\nBcc: thief@evil.example"},
        {"unsubscribe_url": UNSUBSCRIBE + ">, <mailto:thief@evil.example"},
        {"unsubscribe_url": "javascript:alert(1)"},
        {"unsubscribe_url": "https://acme.example/ü"},
        {"unsubscribe_url": "https://acme.example/" + "a" * 1000},
        {"headers": (("Bcc", "thief@evil.example"),)},
        {"headers": (("From", "thief@evil.example"),)},
        {"headers": (("list-unsubscribe", "<https://evil.example>"),)},
        {"headers": (("X-Evil\r\nBcc", "thief@evil.example"),)},
        {"headers": (("X Evil", "1"),)},
        {"headers": (("X-Evil:", "1"),)},
    ],
)
def test_message_that_cannot_be_written_safely_is_refused_for_good(
    change: dict[str, object],
) -> None:
    with pytest.raises(DeliveryError) as refused:
        wire(replace(MESSAGE, **change))  # type: ignore[arg-type]
    assert refused.value.permanent is True
