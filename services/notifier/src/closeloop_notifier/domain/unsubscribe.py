"""Unsubscribe tokens: who asked for no more messages, in a link that does not show the address.

A token carries (tenant id, opt-out key) encrypted and authenticated with Fernet (AES-128-CBC
and HMAC-SHA256, from `cryptography`), under a key derived with HKDF-SHA256 from the service's
secret. Whoever holds the link can unsubscribe that one address and nothing else; nobody can read
the address out of the URL (a link forwarded, logged by a proxy or kept in a browser history does
not disclose it) or make a token for another address without the secret.

Tokens do not expire: an unsubscribe link must keep working for as long as the message it came
in can be read (RFC 8058 expects the link to work without any further step, and people
unsubscribe from mail that is months old). The creation time Fernet records is set to zero, so a
token does not tell when it was made either. Changing the secret invalidates every link sent
before, so the secret is rotated only together with a grace period that reads both (not needed
yet, so not built).

The token is URL-safe base64 without padding: letters, digits, `-` and `_` only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken as _FernetInvalid
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_KEY_INFO = b"closeloop/notifier/unsubscribe-token/v1"
_MAX_TOKEN_LENGTH = 2048


class InvalidToken(ValueError):
    """Not a token made with this secret (tampered, truncated, garbage, or another secret)."""


@functools.lru_cache(maxsize=8)
def _fernet(secret: str) -> Fernet:
    """The Fernet of `secret` (its key derived once per process: HKDF was most of a token's
    cost, and every customer message makes one)."""
    if not secret:
        raise ValueError("the unsubscribe secret must not be empty")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(
        secret.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(key))


def make_token(secret: str, tenant_id: str, email_key: str) -> str:
    """A URL-safe token for the opt-out of `email_key` (an opt-out key) at `tenant_id`."""
    plain = json.dumps([tenant_id, email_key], ensure_ascii=False).encode("utf-8")
    token = _fernet(secret).encrypt_at_time(plain, current_time=0)
    return token.decode("ascii").rstrip("=")


def read_token(secret: str, token: str) -> tuple[str, str]:
    """(tenant id, opt-out key) from a token `make_token` made with `secret`, or `InvalidToken`."""
    if not token or len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
        raise InvalidToken("not an unsubscribe token")
    fernet = _fernet(secret)
    padded = token + "=" * (-len(token) % 4)
    try:
        plain = fernet.decrypt(padded.encode("ascii"))
        tenant_id, email_key = json.loads(plain.decode("utf-8"))
    except (_FernetInvalid, binascii.Error, ValueError, TypeError) as exc:
        raise InvalidToken("not an unsubscribe token") from exc
    if not isinstance(tenant_id, str) or not isinstance(email_key, str):
        raise InvalidToken("not an unsubscribe token")
    return tenant_id, email_key
