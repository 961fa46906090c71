"""E-mail addresses: the one place that decides what a valid address is and how it is written.

`normalize_email` validates an address with `email-validator` (syntax only: no DNS, which needs
the network) and returns its normal form: the local part as given, `@`, the domain lower-cased
and IDNA-encoded (`Anna@Żółw.PL` -> `Anna@xn--w-uga1v8h.pl`). Every service applies it at its
edge (API bodies, paths, settings), stores only the normal form, and compares normal forms.

The normal form is always plain ASCII and a single bare mailbox, so it can go into a `To`
header and an SMTP `RCPT TO` as it is:
- display names (`Anna <anna@example.pl>`), quoted local parts (`"a,b"@example.pl`), domain
  literals (`a@[192.0.2.1]`), several addresses, and `,` `<` `>` `"` or CR/LF anywhere are refused;
- internationalised local parts are refused: they need SMTPUTF8, which many mail servers lack;
- special-use domains (`.local`, `.invalid`, `localhost`, `.onion`, `.arpa`) are refused;
  `.test` is accepted because it is reserved for test set-ups (the compose set-up uses it).
"""

from __future__ import annotations

import re

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email


class InvalidEmailAddress(ValueError):
    """The address is not one we can send to; the message says why (safe to show a client)."""


# The everyday address, already in its normal form: a dot-atom local part of common characters
# and a lower-case LDH domain with an alphabetic top-level label and no `--`. For it the full
# validation (a few dozen microseconds, measurable on ingest's hot path) would return the address
# unchanged, which a property test checks against email-validator. Anything else takes the full
# validation.
_EVERYDAY = re.compile(
    r"[A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]{1,64})*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_SPECIAL_USE = tuple(d for d in SPECIAL_USE_DOMAIN_NAMES if d != "test")


def _is_everyday(address: str) -> bool:
    if len(address) > 254 or not _EVERYDAY.fullmatch(address):
        return False
    local, _, domain = address.rpartition("@")
    return (
        len(local) <= 64
        and "--" not in domain
        and not any(domain == d or domain.endswith("." + d) for d in _SPECIAL_USE)
    )


def normalize_email(address: str) -> str:
    """The normal form of `address` (see the module docstring), or `InvalidEmailAddress`."""
    if _is_everyday(address):
        return address
    try:
        valid = validate_email(
            address,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_display_name=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            test_environment=True,
        )
    except EmailNotValidError as exc:
        raise InvalidEmailAddress(f"not a valid e-mail address: {exc}") from exc
    # With SMTPUTF8 refused the local part is ASCII, so the ASCII form always exists.
    assert valid.ascii_email is not None
    return valid.ascii_email
