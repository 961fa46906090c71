"""Signature checks shared by the source kinds: HMAC digests over what a tool signs,
compared in constant time against every secret of the source (rotation), and the Standard
Webhooks scheme. Pure: the time to compare a timestamp with is the delivery's `received_at`.

Failures are `BadSignature` with the metric reason: `signature_missing`, `signature_invalid` or
`timestamp_out_of_tolerance`. No message names a secret or a digest.

Standard Webhooks: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
The scheme is a few lines of HMAC written here rather than the `standardwebhooks` package's
`verify`: the package measures its fixed tolerance against the wall clock, while a source's
`tolerance_seconds` is measured from `delivery.received_at` (testable, and the time we answer
for). The tests sign with the package, so the two implementations check each other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from closeloop_ingest.domain.sources.base import (
    BadSignature,
    Delivery,
    SourceDefinition,
    verify_hmac,
)

Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64"]
_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def digests(
    keys: Sequence[bytes], message: bytes, algorithm: Algorithm, encoding: Encoding
) -> list[bytes]:
    """The encoded HMAC of `message` under each key (hex in lower case)."""
    raw = [hmac.new(key, message, _HASHES[algorithm]).digest() for key in keys]
    if encoding == "hex":
        return [digest.hex().encode() for digest in raw]
    return [base64.b64encode(digest) for digest in raw]


def check_digest(
    presented: str | None, expected: Sequence[bytes], *, encoding: Encoding, where: str
) -> None:
    """`BadSignature` unless `presented` (the value found at `where`) is one of `expected`."""
    if presented is None or not presented.strip():
        raise BadSignature("signature_missing", f"no signature in {where}")
    value = presented.strip()
    if encoding == "hex":
        value = value.lower()
    if not verify_hmac(expected, value.encode()):
        raise BadSignature("signature_invalid", f"the signature in {where} does not match")


def check_header_digest(
    delivery: Delivery,
    header: str,
    expected: Sequence[bytes],
    *,
    encoding: Encoding,
    prefix: str = "",
) -> None:
    """`BadSignature` unless the header `header` is `<prefix>` and one of `expected`."""
    presented = delivery.header(header)
    if presented is None or not presented.strip():
        raise BadSignature("signature_missing", f"no {header} header")
    value = presented.strip()
    if not value.startswith(prefix):
        raise BadSignature("signature_invalid", f"{header} does not start with {prefix!r}")
    check_digest(value[len(prefix) :], expected, encoding=encoding, where=header)


def verify_body_hmac(
    delivery: Delivery,
    source: SourceDefinition,
    *,
    header: str,
    encoding: Encoding,
    prefix: str = "",
    algorithm: Algorithm = "sha256",
) -> None:
    """The common scheme "HMAC of the raw body, in `header` as `<prefix><digest>`":
    `BadSignature` unless one of the source's secrets made it (all are compared)."""
    expected = digests(source.secret_values(), delivery.body, algorithm, encoding)
    check_header_digest(delivery, header, expected, encoding=encoding, prefix=prefix)


def parse_timestamp(value: str) -> datetime | None:
    """Unix seconds (or milliseconds, when the number is that large) or ISO 8601; None else."""
    text = value.strip()
    if text.isdigit():
        number = int(text)
        seconds = number / 1000 if number >= 100_000_000_000 else number
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def check_tolerance(sent_at: datetime, received_at: datetime, tolerance_seconds: int) -> None:
    if abs((received_at - sent_at).total_seconds()) > tolerance_seconds:
        raise BadSignature(
            "timestamp_out_of_tolerance",
            f"the signed timestamp is more than {tolerance_seconds} s from the time received",
        )


def verify_standard_webhooks(
    delivery: Delivery, secrets: Sequence[bytes], tolerance_seconds: int
) -> None:
    """Standard Webhooks: `webhook-signature` holds space-separated `v1,<base64>` HMAC-SHA256
    of `<webhook-id>.<webhook-timestamp>.<body>` under the base64 key after `whsec_`."""
    msg_id = delivery.header("webhook-id")
    timestamp = delivery.header("webhook-timestamp")
    signatures = delivery.header("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise BadSignature("signature_missing", "webhook-id, -timestamp or -signature is missing")
    sent_at = parse_timestamp(timestamp) if timestamp.strip().isdigit() else None
    if sent_at is None:
        raise BadSignature("signature_invalid", "webhook-timestamp is not Unix seconds")
    keys = [_standard_key(secret) for secret in secrets]
    message = f"{msg_id}.{timestamp.strip()}.".encode() + delivery.body
    expected = digests(keys, message, "sha256", "base64")
    presented = [
        part.split(",", 1)[1].encode()
        for part in signatures.split()
        if part.startswith("v1,") and len(part) > 3
    ]
    matched = False
    for candidate in presented:
        matched |= verify_hmac(expected, candidate)
    if not matched:
        raise BadSignature("signature_invalid", "no webhook-signature matches")
    check_tolerance(sent_at, delivery.received_at, tolerance_seconds)


def _standard_key(secret: bytes) -> bytes:
    text = secret.removeprefix(b"whsec_")
    try:  # some senders leave out the base64 padding
        return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return secret  # not in the whsec_ form: used as the raw key
