"""`closeloop-token`: keys and tokens for self-hosted set-ups (no identity provider).

    closeloop-token keygen --dir .infra/auth
        writes an Ed25519 key pair once: private.pem (mode 0600) and public.pem; it refuses to
        overwrite an existing key, so tokens already handed out stay valid.
    closeloop-token mint --tenant acme --scope read [--scope ...] --ttl 3600 [--subject NAME]
        prints a token signed with the private key (default .infra/auth/private.pem).

The services verify with the public key (`AUTH_PUBLIC_KEY_FILE=.../public.pem`). Tokens are EdDSA
(Ed25519) JWTs carrying `iss`/`aud` (`AUTH_ISSUER`/`AUTH_AUDIENCE`, default `closeloop`), the
tenant claim (`AUTH_TENANT_CLAIM`), `scope`, `sub`, `iat`, `exp` and a random `jti` that
`AUTH_REVOKED_TOKEN_IDS` can revoke.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from closeloop_common.auth import Scope
from closeloop_common.identifiers import TENANT_ID_PATTERN
from closeloop_common.settings import CommonSettings

DEFAULT_KEY = Path(".infra/auth/private.pem")


@dataclass(frozen=True, slots=True)
class KeyPair:
    private: Path
    public: Path


def generate_key_pair(directory: Path) -> KeyPair:
    """Write a new Ed25519 key pair into `directory`; FileExistsError if a key is already there."""
    pair = KeyPair(directory / "private.pem", directory / "public.pem")
    for path in (pair.private, pair.public):
        if path.exists():
            raise FileExistsError(f"{path} exists; remove it first to replace the key pair")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # O_EXCL: never replace a key that appeared meanwhile; the mode is set at creation, so the
    # private key is never readable by others, not even for an instant.
    _write_new(pair.private, private_pem, 0o600)
    _write_new(pair.public, public_pem, 0o644)
    return pair


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def mint_token(
    private_key_pem: bytes,
    *,
    tenant: str,
    scopes: Iterable[str],
    ttl_seconds: int,
    subject: str | None = None,
    issuer: str = "closeloop",
    audience: str = "closeloop",
    tenant_claim: str = "tenant",
    key_id: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token for `tenant` with `scopes`, valid for `ttl_seconds` from `now`."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("closeloop-token signs with Ed25519 keys (closeloop-token keygen)")
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
        "jti": uuid.uuid4().hex,
        tenant_claim: tenant,
        "scope": " ".join(scopes),
    }
    if subject is not None:
        claims["sub"] = subject
    headers = {"kid": key_id} if key_id is not None else None
    return jwt.encode(claims, key, algorithm="EdDSA", headers=headers)


def _tenant(value: str) -> str:
    if not re.match(TENANT_ID_PATTERN, value):
        raise argparse.ArgumentTypeError(f"a tenant id must match {TENANT_ID_PATTERN}")
    return value


def _positive(value: str) -> int:
    seconds = int(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the lifetime must be at least one second")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="closeloop-token", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="write a new key pair (never overwrites)")
    keygen.add_argument("--dir", type=Path, required=True, help="folder for the two PEM files")
    mint = commands.add_parser("mint", help="print a signed token")
    mint.add_argument("--key", type=Path, default=DEFAULT_KEY, help="the private key (PEM)")
    mint.add_argument("--tenant", type=_tenant, required=True)
    mint.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        choices=[s.value for s in Scope],
        help="repeat for several scopes; admin implies the others",
    )
    mint.add_argument("--ttl", type=_positive, required=True, help="lifetime in seconds")
    mint.add_argument("--subject", default=None, help="who the token is for (the `sub` claim)")
    args = parser.parse_args(argv)

    if args.command == "keygen":
        try:
            pair = generate_key_pair(args.dir)
        except FileExistsError as exc:
            print(f"closeloop-token: {exc}", file=sys.stderr)
            return 1
        print(f"private key: {pair.private}\npublic key:  {pair.public}")
        return 0
    settings = CommonSettings()
    print(
        mint_token(
            args.key.read_bytes(),
            tenant=args.tenant,
            scopes=args.scopes,
            ttl_seconds=args.ttl,
            subject=args.subject,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            tenant_claim=settings.auth_tenant_claim,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
