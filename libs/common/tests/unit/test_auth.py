"""Bearer tokens are verified locally: signature, algorithm, expiry, issuer, audience, required
claims, tenant, scopes and the deny-list; anything else is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from closeloop_common.auth import Authenticator, Scope, Unauthorized
from closeloop_common.settings import CommonSettings
from closeloop_common.tokens import mint_token

TENANT = "acme"


@pytest.fixture(autouse=True)
def no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test run's own AUTH_PUBLIC_KEY_FILE would clash with the keys these tests configure."""
    monkeypatch.delenv("AUTH_PUBLIC_KEY_FILE", raising=False)


def private_pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def authenticator(key: ed25519.Ed25519PrivateKey, **settings: Any) -> Authenticator:
    return Authenticator.from_settings(
        CommonSettings(environment="test", auth_public_key=public_pem(key), **settings)
    )


def claims(**overrides: Any) -> dict[str, Any]:
    """A complete, valid claim set; `None` drops a claim."""
    now = int(time.time())
    found: dict[str, Any] = {
        "iss": "closeloop",
        "aud": "closeloop",
        "sub": "tester",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "tenant": TENANT,
        "scope": "read",
    }
    found.update(overrides)
    return {k: v for k, v in found.items() if v is not None}


def signed(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey, payload: dict[str, Any]) -> str:
    algorithm = "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey) else "RS256"
    return jwt.encode(payload, private_pem(key), algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def refusal(auth: Authenticator, token: str) -> str:
    with pytest.raises(Unauthorized) as refused:
        await auth.authenticate(token)
    return str(refused.value)


async def test_a_valid_token_gives_its_tenant_scopes_subject_and_id(
    key: ed25519.Ed25519PrivateKey,
) -> None:
    payload = claims(scope="read cases:write")

    principal = await authenticator(key).authenticate(signed(key, payload))

    assert principal.tenant == TENANT
    assert principal.scopes == frozenset({Scope.READ, Scope.CASES_WRITE})
    assert principal.subject == "tester"
    assert principal.token_id == payload["jti"]


async def test_a_token_minted_by_closeloop_token_is_accepted(
    key: ed25519.Ed25519PrivateKey,
) -> None:
    token = mint_token(
        private_pem(key), tenant=TENANT, scopes=["responses:write"], ttl_seconds=60, subject="feed"
    )

    principal = await authenticator(key).authenticate(token)

    assert (principal.tenant, principal.subject) == (TENANT, "feed")
    assert principal.allows(Scope.RESPONSES_WRITE)
    assert not principal.allows(Scope.READ)


async def test_an_expired_token_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    past = int(time.time()) - 3600
    token = signed(key, claims(iat=past - 300, exp=past))

    assert "expired" in await refusal(authenticator(key), token)


async def test_a_token_signed_by_another_key_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    other = ed25519.Ed25519PrivateKey.generate()

    assert "signature" in await refusal(authenticator(key), signed(other, claims()))


async def test_a_token_of_another_issuer_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    token = signed(key, claims(iss="https://evil.example"))

    assert "issuer" in await refusal(authenticator(key), token)


async def test_a_token_for_another_audience_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    token = signed(key, claims(aud="some-other-api"))

    assert "audience" in await refusal(authenticator(key), token)


async def test_the_configured_issuer_and_audience_are_the_ones_required(
    key: ed25519.Ed25519PrivateKey,
) -> None:
    auth = authenticator(key, auth_issuer="https://sso.acme.example", auth_audience="closeloop-api")
    token = signed(key, claims(iss="https://sso.acme.example", aud="closeloop-api"))

    assert (await auth.authenticate(token)).tenant == TENANT
    assert "issuer" in await refusal(auth, signed(key, claims(aud="closeloop-api")))


async def test_an_unsigned_alg_none_token_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    token = f"{header}.{b64(json.dumps(claims(scope='admin')).encode())}."

    assert "algorithm" in await refusal(authenticator(key), token)


async def test_an_hmac_token_keyed_with_the_public_key_is_refused(
    key: ed25519.Ed25519PrivateKey,
) -> None:
    # The classic algorithm confusion: sign with HS256 using the (public) verification key.
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims(scope="admin")).encode())
    mac = hmac.new(public_pem(key).encode(), f"{header}.{body}".encode(), hashlib.sha256)
    token = f"{header}.{body}.{b64(mac.digest())}"

    assert "algorithm" in await refusal(authenticator(key), token)


async def test_a_refused_algorithm_is_not_quoted_back(key: ed25519.Ed25519PrivateKey) -> None:
    # The header's `alg` is the caller's text: echoed, a 2,000-character one filled the detail
    # and the WWW-Authenticate challenge of every service's 401.
    header = b64(json.dumps({"alg": "X" * 2000, "typ": "JWT"}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}.c2ln"

    reason = await refusal(authenticator(key), token)

    assert reason == "the token's algorithm is not accepted (accepted: EdDSA)"


async def test_an_algorithm_that_is_not_configured_is_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings = CommonSettings(environment="test", auth_public_key=public_pem(rsa_key))

    with pytest.raises(ValueError, match="RS256"):
        # An RSA key cannot verify the only configured algorithm, EdDSA: refused at start.
        Authenticator.from_settings(settings)

    auth = Authenticator.from_settings(
        CommonSettings(
            environment="test", auth_public_key=public_pem(rsa_key), auth_algorithms=["RS256"]
        )
    )
    assert (await auth.authenticate(signed(rsa_key, claims()))).tenant == TENANT


@pytest.mark.parametrize("missing", ["exp", "iat", "jti", "iss", "aud", "tenant"])
async def test_a_token_without_a_required_claim_is_refused(
    key: ed25519.Ed25519PrivateKey, missing: str
) -> None:
    token = signed(key, claims(**{missing: None}))

    assert missing in await refusal(authenticator(key), token)


@pytest.mark.parametrize("tenant", ["Acme", "has space", "-dash", "a" * 64, 42, ""])
async def test_a_token_whose_tenant_is_not_a_tenant_id_is_refused(
    key: ed25519.Ed25519PrivateKey, tenant: object
) -> None:
    assert "tenant" in await refusal(authenticator(key), signed(key, claims(tenant=tenant)))


async def test_the_tenant_claim_name_is_configurable(key: ed25519.Ed25519PrivateKey) -> None:
    auth = authenticator(key, auth_tenant_claim="https://closeloop.dev/tenant")
    token = signed(key, claims(tenant=None, **{"https://closeloop.dev/tenant": "globex"}))

    assert (await auth.authenticate(token)).tenant == "globex"
    assert "tenant" in await refusal(auth, signed(key, claims()))


async def test_a_revoked_token_id_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    payload = claims()
    auth = authenticator(key, auth_revoked_token_ids=[payload["jti"]])

    assert "revoked" in await refusal(auth, signed(key, payload))
    assert (await auth.authenticate(signed(key, claims()))).tenant == TENANT


async def test_a_token_id_added_to_the_revocation_file_is_refused_without_a_restart(
    key: ed25519.Ed25519PrivateKey, tmp_path: Path
) -> None:
    revoked = tmp_path / "revoked.txt"
    revoked.write_text("# revoked token ids\nsomething-else\n")
    auth = authenticator(key, auth_revoked_token_ids_file=revoked)
    payload = claims()
    token = signed(key, payload)
    assert (await auth.authenticate(token)).tenant == TENANT

    revoked.write_text(f"something-else\n{payload['jti']}\n")

    assert "revoked" in await refusal(auth, token)


@pytest.mark.parametrize(
    ("scope_claims", "expected"),
    [
        pytest.param({"scope": "read responses:write"}, {"read", "responses:write"}, id="scope"),
        pytest.param({"scope": None, "scp": ["cases:write"]}, {"cases:write"}, id="scp-list"),
        pytest.param({"scope": None, "scp": "read"}, {"read"}, id="scp-string"),
        pytest.param({"scope": "read unknown:thing"}, {"read"}, id="unknown-ignored"),
        pytest.param({"scope": None}, set(), id="none"),
    ],
)
async def test_scopes_come_from_scope_or_scp(
    key: ed25519.Ed25519PrivateKey, scope_claims: dict[str, Any], expected: set[str]
) -> None:
    principal = await authenticator(key).authenticate(signed(key, claims(**scope_claims)))

    assert {s.value for s in principal.scopes} == expected


async def test_admin_implies_every_scope(key: ed25519.Ed25519PrivateKey) -> None:
    principal = await authenticator(key).authenticate(signed(key, claims(scope="admin")))

    assert all(principal.allows(scope) for scope in Scope)


async def test_without_a_configured_key_every_token_is_refused(
    key: ed25519.Ed25519PrivateKey,
) -> None:
    auth = Authenticator.from_settings(CommonSettings(environment="test"))

    assert not auth.configured
    assert "no key" in await refusal(auth, signed(key, claims()))


async def test_the_public_key_can_come_from_a_file(
    key: ed25519.Ed25519PrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "public.pem"
    path.write_text(public_pem(key))
    auth = Authenticator.from_settings(
        CommonSettings(environment="test", auth_public_key_file=path)
    )

    assert (await auth.authenticate(signed(key, claims()))).tenant == TENANT


def test_a_key_that_is_not_a_pem_public_key_fails_at_start() -> None:
    with pytest.raises(ValueError, match="public key"):
        Authenticator.from_settings(CommonSettings(environment="test", auth_public_key="not a key"))


async def test_a_malformed_token_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    assert await refusal(authenticator(key), "not.a.jwt")
