"""Unsubscribe tokens: they carry the tenant and the opt-out key, show neither, and cannot be
forged, altered or read without the secret."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_notifier.domain.unsubscribe import InvalidToken, make_token, read_token

SECRET = "a long random secret from the settings"
TENANT = "acme"
EMAIL_KEY = "anna.nowak@klient.example.pl"


def test_token_reads_back_as_its_tenant_and_opt_out_key() -> None:
    token = make_token(SECRET, TENANT, EMAIL_KEY)
    assert read_token(SECRET, token) == (TENANT, EMAIL_KEY)


def test_token_is_url_safe_and_does_not_show_the_address() -> None:
    token = make_token(SECRET, TENANT, EMAIL_KEY)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert "anna" not in token.lower()
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"anna" not in decoded
    assert b"klient" not in decoded


def test_two_tokens_for_one_address_differ_and_both_work() -> None:
    first, second = make_token(SECRET, TENANT, EMAIL_KEY), make_token(SECRET, TENANT, EMAIL_KEY)
    assert first != second  # a random IV: tokens cannot be compared to find the same address
    assert read_token(SECRET, first) == read_token(SECRET, second)


def test_token_does_not_tell_when_it_was_made() -> None:
    decoded = base64.urlsafe_b64decode(make_token(SECRET, TENANT, EMAIL_KEY) + "==")
    assert decoded[1:9] == bytes(8)  # Fernet's timestamp field


def test_token_made_with_another_secret_is_refused() -> None:
    token = make_token("another secret", TENANT, EMAIL_KEY)
    with pytest.raises(InvalidToken):
        read_token(SECRET, token)


def test_every_single_character_change_is_refused() -> None:
    token = make_token(SECRET, TENANT, EMAIL_KEY)
    for at in range(len(token)):
        replacement = "A" if token[at] != "A" else "B"
        tampered = token[:at] + replacement + token[at + 1 :]
        try:
            read = read_token(SECRET, tampered)
        except InvalidToken:
            continue
        # Only the unused low bits of the last base64 character can change without effect.
        assert at == len(token) - 1
        assert read == (TENANT, EMAIL_KEY)


@pytest.mark.parametrize(
    "garbage",
    ["", "x", "not a token", "é" * 20, "A" * 5000, "gAAAAA", "../../etc/passwd", "%00"],
)
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        read_token(SECRET, garbage)


def test_truncated_token_is_refused() -> None:
    token = make_token(SECRET, TENANT, EMAIL_KEY)
    with pytest.raises(InvalidToken):
        read_token(SECRET, token[:-4])


def test_empty_secret_is_a_configuration_error_not_a_bad_token() -> None:
    with pytest.raises(ValueError, match="secret") as raised:
        make_token("", TENANT, EMAIL_KEY)
    assert not isinstance(raised.value, InvalidToken)


@given(tenant=st.text(max_size=60), email_key=st.text(max_size=200))
def test_any_tenant_and_key_round_trip(tenant: str, email_key: str) -> None:
    assert read_token(SECRET, make_token(SECRET, tenant, email_key)) == (tenant, email_key)
