"""`normalize_email`: which addresses are accepted, and the one normal form they are stored in."""

from __future__ import annotations

from email.headerregistry import Address

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import strategies as st

from closeloop_common.emails import InvalidEmailAddress, normalize_email

# "EXAMPLE" in full-width letters (U+FF21...), another spelling of the same domain.
FULLWIDTH_EXAMPLE = "".join(chr(ord(c) + 0xFEE0) for c in "EXAMPLE")


@pytest.mark.parametrize(
    ("given_address", "normal_form"),
    [
        ("anna@example.pl", "anna@example.pl"),
        ("Anna@Example.PL", "Anna@example.pl"),  # the local part is kept as given
        (f"anna@{FULLWIDTH_EXAMPLE}.pl", "anna@example.pl"),  # full-width letters map to ASCII
        ("anna@ŻÓŁW.pl", "anna@xn--w-uga1v8h.pl"),  # an internationalised domain, IDNA-encoded
        ("anna@xn--w-uga1v8h.pl", "anna@xn--w-uga1v8h.pl"),
        ("jan.kowalski+nps@klient.example.pl", "jan.kowalski+nps@klient.example.pl"),
        ("care@example.test", "care@example.test"),  # the reserved test domain of local set-ups
    ],
)
def test_valid_address_is_returned_in_its_normal_form(given_address: str, normal_form: str) -> None:
    assert normalize_email(given_address) == normal_form


@pytest.mark.parametrize(
    "address",
    [
        "a@[b.c",  # passed the old pattern, then broke the To header
        "a@[192.0.2.1]",  # domain literal
        "anna,boss@example.pl",  # would be two recipients in a To header
        "anna@example.pl,boss@example.pl",
        "anna<boss@example.pl>",  # would send to boss
        "Anna <anna@example.pl>",  # display name
        '"anna,boss"@example.pl',  # quoted local part
        "anna@example.pl>",
        "anna@example.pl\r\nBcc: boss@example.pl",  # header injection
        "anna@example.pl\n",
        " anna@example.pl",
        "żaneta@example.pl",  # needs SMTPUTF8
        "anna@localhost",
        "anna@corp.local",  # special-use domain
        "anna@example",  # no dot in the domain
        "anna..nowak@example.pl",
        "@example.pl",
        "anna@",
        "",
    ],
)
def test_address_that_could_not_be_sent_as_one_mailbox_is_refused(address: str) -> None:
    with pytest.raises(InvalidEmailAddress, match="not a valid e-mail address"):
        normalize_email(address)


def test_refusal_is_a_value_error_so_pydantic_validators_report_it_as_invalid_input() -> None:
    with pytest.raises(ValueError, match="not a valid e-mail address"):
        normalize_email("a@[b.c")


@given(st.text(max_size=40) | st.emails())
def test_normal_form_is_one_plain_ascii_mailbox_and_normalizing_it_again_changes_nothing(
    address: str,
) -> None:
    try:
        normal = normalize_email(address)
    except InvalidEmailAddress:
        return
    assert normal.isascii()
    assert not any(c in normal for c in ',<>"\r\n\t ')
    assert normal.count("@") == 1
    local, domain = normal.split("@")
    parsed = Address(addr_spec=normal)
    assert (parsed.username, parsed.domain) == (local, domain)
    assert domain == domain.lower()
    assert normalize_email(normal) == normal


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_ADDRESSES = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    st.from_regex(r"[A-Za-z0-9_+.-]{1,20}", fullmatch=True),
    st.lists(_LABEL, min_size=1, max_size=3),
    st.sampled_from(["pl", "com", "example", "test", "local", "onion", "xn--p1ai", "c0m", "a"]),
)


@given(_ADDRESSES)
def test_the_fast_path_for_everyday_addresses_agrees_with_email_validator(address: str) -> None:
    """`normalize_email` skips the full validation for addresses already in normal form; for
    each address it must answer exactly what the full validation answers."""
    try:
        full: str | None = validate_email(
            address,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_display_name=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            test_environment=True,
        ).ascii_email
    except EmailNotValidError:
        full = None
    try:
        ours: str | None = normalize_email(address)
    except InvalidEmailAddress:
        ours = None
    assert ours == full
