"""What the notifier sends: locale choice, rendered templates, retry backoff and the MIME message."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_common.events import Playbook
from closeloop_notifier.adapters.smtp import OutgoingEmail
from closeloop_notifier.domain.templates import MessageContext, choose_locale, render
from closeloop_notifier.service_layer.policy import DeliveryPolicy

OWNER = "Jan Kowalski"
COMPANY = "Acme Sp. z o.o."


def context(
    *, customer_name: str | None = "Anna Nowak", comment: str | None = None
) -> MessageContext:
    return MessageContext(
        customer_name=customer_name,
        comment=comment,
        owner_name=OWNER,
        owner_email="jan@acme.example",
        company_name=COMPANY,
    )


# Text a customer could type on one line: letters, digits, punctuation, symbols ($ included), spaces.
line_text = st.text(
    alphabet=st.characters(categories=["L", "N", "P", "S"], include_characters=" "),
    max_size=40,
)


# --- choose_locale -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer_locale", "locale"),
    [
        ("pl-PL", "pl"),
        ("pl", "pl"),
        ("PL-pl", "pl"),
        ("en-GB", "en"),
        ("en", "en"),
        ("de", "en"),
        ("de-DE", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_choose_locale_picks_a_supported_language_or_falls_back_to_english(
    customer_locale: str | None, locale: str
) -> None:
    assert choose_locale(customer_locale) == locale


# --- render ------------------------------------------------------------------------------------


@pytest.mark.parametrize("playbook", list(Playbook))
@pytest.mark.parametrize("customer_locale", ["en-GB", "pl-PL"])
def test_every_playbook_renders_in_both_locales_signed_by_the_owner(
    playbook: Playbook, customer_locale: str
) -> None:
    message = render(playbook, customer_locale, context())
    assert message.locale == customer_locale[:2]
    assert message.subject.strip()
    assert message.body.strip()
    assert OWNER in message.body
    assert COMPANY in message.body
    assert "jan@acme.example" in message.body
    assert "$" not in message.subject + message.body  # no placeholder left unfilled


@pytest.mark.parametrize(
    ("playbook", "template"),
    [
        (Playbook.APOLOGY_CALLBACK, "apology"),
        (Playbook.IMPROVEMENT_ASK, "improvement_ask"),
        (Playbook.THANKS_REFERRAL, "thanks"),
    ],
)
def test_render_names_the_template_of_the_playbook(playbook: Playbook, template: str) -> None:
    assert render(playbook, "en", context()).template == template


def test_the_six_messages_are_all_different() -> None:
    rendered = {
        render(playbook, locale, context()).subject
        for playbook in Playbook
        for locale in ("en", "pl")
    }
    assert len(rendered) == 6


def test_polish_apology_says_sorry_and_greets_the_customer_by_name() -> None:
    message = render(Playbook.APOLOGY_CALLBACK, "pl-PL", context(customer_name="Anna Nowak"))
    assert message.locale == "pl"
    assert "Przepraszamy" in message.subject
    assert message.body.startswith("Dzień dobry, Anna Nowak,\n")


def test_english_message_greets_the_customer_by_name() -> None:
    message = render(Playbook.THANKS_REFERRAL, "en", context(customer_name="  Anna Nowak "))
    assert message.body.startswith("Dear Anna Nowak,\n")


@pytest.mark.parametrize("customer_name", [None, "", "   "])
@pytest.mark.parametrize(
    ("customer_locale", "greeting"), [("en", "Hello,"), ("pl", "Dzień dobry,")]
)
def test_a_customer_without_a_name_gets_the_anonymous_greeting(
    customer_name: str | None, customer_locale: str, greeting: str
) -> None:
    message = render(
        Playbook.IMPROVEMENT_ASK, customer_locale, context(customer_name=customer_name)
    )
    assert message.body.splitlines()[0] == greeting


def test_the_comment_is_quoted_line_by_line() -> None:
    comment = "Delivery was late.\n\nSupport never called back."
    message = render(Playbook.APOLOGY_CALLBACK, "en", context(comment=comment))
    assert "You wrote:\n> Delivery was late.\n>\n> Support never called back.\n" in message.body


def test_the_polish_message_introduces_the_comment_in_polish() -> None:
    message = render(Playbook.APOLOGY_CALLBACK, "pl", context(comment="Za wolno."))
    assert "Napisali Państwo:\n> Za wolno.\n" in message.body


@pytest.mark.parametrize("comment", [None, "", "  \n\t "])
def test_there_is_no_quote_without_a_comment(comment: str | None) -> None:
    message = render(Playbook.APOLOGY_CALLBACK, "en", context(comment=comment))
    assert "You wrote:" not in message.body
    assert not any(line.startswith(">") for line in message.body.splitlines())


def test_a_dollar_in_the_name_or_comment_is_kept_literally() -> None:
    message = render(
        Playbook.APOLOGY_CALLBACK,
        "en",
        context(customer_name="$company Bob", comment="I paid $100 for ${owner} and $"),
    )
    assert message.body.startswith("Dear $company Bob,\n")
    assert "> I paid $100 for ${owner} and $\n" in message.body


@given(line_text.filter(str.strip))
def test_any_name_appears_verbatim_in_the_greeting(name: str) -> None:
    message = render(Playbook.THANKS_REFERRAL, "en", context(customer_name=name))
    assert message.body.splitlines()[0] == f"Dear {name.strip()},"


@given(st.lists(line_text, min_size=1, max_size=6).filter(lambda ls: any(x.strip() for x in ls)))
def test_every_line_of_any_comment_is_quoted(lines: list[str]) -> None:
    message = render(Playbook.IMPROVEMENT_ASK, "en", context(comment="\n".join(lines)))
    body_lines = message.body.splitlines()
    for line in "\n".join(lines).strip().split("\n"):
        assert (f"> {line}" if line else ">") in body_lines


# --- DeliveryPolicy.retry_after ----------------------------------------------------------------


def test_retry_after_doubles_from_the_first_retry() -> None:
    policy = DeliveryPolicy(
        first_retry_after=timedelta(seconds=30), max_retry_after=timedelta(hours=1)
    )
    assert [policy.retry_after(n).total_seconds() for n in range(1, 9)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
    ]


def test_retry_after_before_any_attempt_is_the_first_retry() -> None:
    assert DeliveryPolicy().retry_after(0) == DeliveryPolicy().first_retry_after


@given(st.integers(min_value=1, max_value=40))
def test_retry_after_doubles_until_it_reaches_the_cap(attempts: int) -> None:
    policy = DeliveryPolicy(
        first_retry_after=timedelta(seconds=30), max_retry_after=timedelta(hours=1)
    )
    now, later = policy.retry_after(attempts), policy.retry_after(attempts + 1)
    assert now <= policy.max_retry_after
    assert later == min(policy.max_retry_after, 2 * now)


def test_retry_after_stays_at_the_cap_for_as_many_attempts_as_the_settings_allow() -> None:
    policy = DeliveryPolicy(max_attempts=50)
    assert policy.retry_after(49) == policy.max_retry_after


# --- OutgoingEmail.to_mime ---------------------------------------------------------------------


@pytest.fixture
def outgoing() -> OutgoingEmail:
    return OutgoingEmail(
        message_id="6f1c2a1e-0000-4000-8000-000000000001",
        sender="care@acme.example",
        sender_name="Obsługa Klienta",
        recipient="anna@example.com",
        reply_to="jan@acme.example",
        subject="Przepraszamy i chcemy to naprawić",
        body="Dzień dobry, Anna Nowak,\n\nzażółć gęślą jaźń\n",
        headers=(("X-Closeloop-Case-Id", "case-1"), ("X-Closeloop-Template", "apology")),
    )


def test_to_mime_sets_the_addresses_subject_and_stable_message_id(outgoing: OutgoingEmail) -> None:
    msg = outgoing.to_mime()
    sender = msg["From"].addresses[0]
    assert sender.display_name == "Obsługa Klienta"
    assert sender.addr_spec == "care@acme.example"
    assert msg["To"] == "anna@example.com"
    assert msg["Reply-To"] == "jan@acme.example"
    assert msg["Subject"] == "Przepraszamy i chcemy to naprawić"
    assert msg["Message-ID"] == "<6f1c2a1e-0000-4000-8000-000000000001@closeloop>"
    assert msg["Date"] is not None


def test_to_mime_adds_the_extra_headers(outgoing: OutgoingEmail) -> None:
    msg = outgoing.to_mime()
    assert msg["X-Closeloop-Case-Id"] == "case-1"
    assert msg["X-Closeloop-Template"] == "apology"


def test_to_mime_keeps_a_content_language_extra_header() -> None:
    msg = OutgoingEmail(
        message_id="m-1",
        sender="care@acme.example",
        sender_name="Care",
        recipient="anna@example.com",
        reply_to=None,
        subject="Przepraszamy",
        body="Dzień dobry,\n",
        headers=(("Content-Language", "pl"),),
    ).to_mime()
    assert msg["Content-Language"] == "pl"


def test_to_mime_leaves_out_reply_to_when_there_is_none(outgoing: OutgoingEmail) -> None:
    msg = OutgoingEmail(
        message_id="m-1",
        sender=outgoing.sender,
        sender_name=outgoing.sender_name,
        recipient=outgoing.recipient,
        reply_to=None,
        subject=outgoing.subject,
        body=outgoing.body,
    ).to_mime()
    assert "Reply-To" not in msg


def test_to_mime_body_is_utf8_and_survives_the_wire(outgoing: OutgoingEmail) -> None:
    msg = outgoing.to_mime()
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"

    received = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert received.get_content() == "Dzień dobry, Anna Nowak,\n\nzażółć gęślą jaźń\n"
    assert received["Subject"] == "Przepraszamy i chcemy to naprawić"
    assert received["From"].addresses[0].display_name == "Obsługa Klienta"
    assert received["Message-ID"] == "<6f1c2a1e-0000-4000-8000-000000000001@closeloop>"


def test_to_mime_refuses_a_header_that_would_inject_another_header(
    outgoing: OutgoingEmail,
) -> None:
    injected = OutgoingEmail(
        message_id="m-1",
        sender=outgoing.sender,
        sender_name=outgoing.sender_name,
        recipient=outgoing.recipient,
        reply_to=None,
        subject="Hello\nBcc: everyone@example.com",
        body="x",
    )
    with pytest.raises(ValueError, match="linefeed"):
        injected.to_mime()
