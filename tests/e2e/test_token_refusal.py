"""Every service, as a process, refuses every kind of bad token with a 401 problem whose detail
and challenge never quote the token: expired, signed with another key, of another issuer, for
another audience, `alg: none`, HMAC keyed with our public key (algorithm confusion), without the
tenant claim, and malformed. (`libs/common/tests/unit/test_auth.py` covers each check of the
authenticator; this proves each service is wired to it.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from closeloop_devtools.stack import Stack

# A read route of each service, called with each bad token.
READ_ROUTES = {
    "ingest": "/v1/sources",
    "scoring": "/v1/nps",
    "orchestrator": "/v1/cases",
    "notifier": "/v1/messages",
}
PROBLEM_CONTENT_TYPE = "application/problem+json"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "closeloop",
        "aud": "closeloop",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "tenant": "token-refusal",
        "scope": "admin",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def _segment(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def bad_tokens(private_pem: bytes, public_pem: bytes) -> dict[str, str]:
    key = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    other = ed25519.Ed25519PrivateKey.generate()
    now = int(time.time())
    return {
        "expired": jwt.encode(claims(iat=now - 7200, exp=now - 3600), key, algorithm="EdDSA"),
        "another key": jwt.encode(claims(), other, algorithm="EdDSA"),
        "another issuer": jwt.encode(claims(iss="someone-else"), key, algorithm="EdDSA"),
        "another audience": jwt.encode(claims(aud="another-api"), key, algorithm="EdDSA"),
        "alg none": f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims())}.",
        # PyJWT refuses to sign HMAC with a PEM key, so the token is put together by hand.
        "hmac with the public key": _hmac_token(public_pem, claims()),
        "no tenant claim": jwt.encode(claims(tenant=None), key, algorithm="EdDSA"),
        "malformed": "not-a-jwt." + uuid.uuid4().hex,
        "huge alg": f"{_segment({'alg': 'X' * 2000})}.{_segment(claims())}.c2ln",
    }


def _hmac_token(secret: bytes, payload: dict[str, Any]) -> str:
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_every_service_refuses_every_kind_of_bad_token_without_quoting_it(stack: Stack) -> None:
    public = Path(stack.env["AUTH_PUBLIC_KEY_FILE"])
    tokens = bad_tokens(public.with_name("private.pem").read_bytes(), public.read_bytes())
    refusals: dict[tuple[str, str], tuple[int, str, str]] = {}
    with httpx.Client(timeout=10) as client:
        for service, route in READ_ROUTES.items():
            for kind, token in tokens.items():
                reply = client.get(
                    stack.url(service) + route, headers={"Authorization": f"Bearer {token}"}
                )
                challenge = reply.headers.get("www-authenticate", "")
                quoted = [
                    part
                    for part in token.split(".")
                    if len(part) >= 8 and (part in reply.text or part in challenge)
                ]
                assert quoted == [], (service, kind)
                assert len(reply.text) + len(challenge) < 1000, (service, kind)
                refusals[(service, kind)] = (
                    reply.status_code,
                    reply.headers["content-type"],
                    reply.json()["type"],
                )
            assert client.get(stack.url(service) + "/healthz").status_code == 200

    assert set(refusals.values()) == {
        (401, PROBLEM_CONTENT_TYPE, "urn:closeloop:problem:unauthorized")
    }
    assert len(refusals) == len(READ_ROUTES) * len(tokens)
