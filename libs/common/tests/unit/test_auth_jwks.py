"""Keys from an identity provider's JWKS URL (served here by a real HTTP server on 127.0.0.1):
fetched once and cached, refetched when a token names an unknown key id (rotation), at most once
per `AUTH_JWKS_MIN_REFRESH_SECONDS`, and an unreachable provider is an outage, not a bad token."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from closeloop_common.auth import Authenticator, KeysUnavailable, Unauthorized
from closeloop_common.settings import CommonSettings


@pytest.fixture(autouse=True)
def no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test run's own AUTH_PUBLIC_KEY_FILE would clash with the keys these tests configure."""
    monkeypatch.delenv("AUTH_PUBLIC_KEY_FILE", raising=False)


class FakeIdentityProvider:
    """Serves `/jwks` from a list of keys the test can replace; counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                body = json.dumps({"keys": provider.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, *keys: tuple[str, rsa.RSAPrivateKey]) -> None:
        self.keys = [
            {**json.loads(RSAAlgorithm.to_jwk(k.public_key())), "kid": kid, "alg": "RS256"}
            for kid, k in keys
        ]


@pytest.fixture
def idp() -> Iterator[FakeIdentityProvider]:
    provider = FakeIdentityProvider()
    provider._thread.start()
    yield provider
    provider.server.shutdown()
    provider.server.server_close()


@pytest.fixture(scope="module")
def old_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def authenticator(url: str, *, min_refresh: float) -> Authenticator:
    return Authenticator.from_settings(
        CommonSettings(
            environment="test",
            auth_jwks_url=url,
            auth_algorithms=["RS256"],
            auth_issuer="https://sso.acme.example/realms/acme",
            auth_jwks_min_refresh_seconds=min_refresh,
        )
    )


def token(key: rsa.RSAPrivateKey, kid: str, tenant: str = "acme") -> str:
    now = int(time.time())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return jwt.encode(
        {
            "iss": "https://sso.acme.example/realms/acme",
            "aud": "closeloop",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "tenant": tenant,
            "scope": "read",
        },
        pem,
        algorithm="RS256",
        headers={"kid": kid},
    )


async def test_keys_are_fetched_once_and_reused(
    idp: FakeIdentityProvider, old_key: rsa.RSAPrivateKey
) -> None:
    idp.publish(("k1", old_key))
    auth = authenticator(idp.url, min_refresh=0)

    first = await auth.authenticate(token(old_key, "k1", tenant="acme"))
    second = await auth.authenticate(token(old_key, "k1", tenant="globex"))

    assert (first.tenant, second.tenant) == ("acme", "globex")
    assert idp.fetches == 1


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    idp: FakeIdentityProvider, old_key: rsa.RSAPrivateKey, new_key: rsa.RSAPrivateKey
) -> None:
    idp.publish(("k1", old_key))
    auth = authenticator(idp.url, min_refresh=0)
    assert (await auth.authenticate(token(old_key, "k1"))).tenant == "acme"

    # The provider rotates: k2 signs from now on, k1 is withdrawn.
    idp.publish(("k2", new_key))

    assert (await auth.authenticate(token(new_key, "k2"))).tenant == "acme"
    assert idp.fetches == 2
    with pytest.raises(Unauthorized, match="key"):
        await auth.authenticate(token(old_key, "k1"))


async def test_unknown_key_ids_refetch_at_most_once_per_interval(
    idp: FakeIdentityProvider, old_key: rsa.RSAPrivateKey, new_key: rsa.RSAPrivateKey
) -> None:
    idp.publish(("k1", old_key))
    auth = authenticator(idp.url, min_refresh=3600)
    await auth.authenticate(token(old_key, "k1"))

    for kid in ("forged-1", "forged-2", "forged-3"):
        with pytest.raises(Unauthorized, match="key"):
            await auth.authenticate(token(new_key, kid))

    assert idp.fetches == 1


async def test_a_token_signed_by_a_key_outside_the_set_is_refused(
    idp: FakeIdentityProvider, old_key: rsa.RSAPrivateKey, new_key: rsa.RSAPrivateKey
) -> None:
    idp.publish(("k1", old_key))
    auth = authenticator(idp.url, min_refresh=0)

    with pytest.raises(Unauthorized, match="signature"):
        await auth.authenticate(token(new_key, "k1"))


async def test_an_unreachable_identity_provider_is_an_outage_not_a_bad_token(
    idp: FakeIdentityProvider, old_key: rsa.RSAPrivateKey
) -> None:
    url = idp.url
    idp.server.shutdown()
    idp.server.server_close()
    auth = authenticator(url, min_refresh=0)

    with pytest.raises(KeysUnavailable):
        await auth.authenticate(token(old_key, "k1"))
