"""Bearer-token authentication: JWTs verified locally by each service (no shared table, no call to
another service), with PyJWT.

Contract of `Authenticator.authenticate(token)`:
- The signature must verify with a configured key: the PEM public key (`AUTH_PUBLIC_KEY` or
  `AUTH_PUBLIC_KEY_FILE`, read once at start) or a key of the identity provider's JWKS
  (`AUTH_JWKS_URL`). Only `AUTH_ALGORITHMS` are accepted (asymmetric only, default `EdDSA`):
  `none`, HMAC and any algorithm the key cannot do are refused.
- Required claims: `exp`, `iat`, `jti`, `iss` (= `AUTH_ISSUER`), `aud` (contains `AUTH_AUDIENCE`)
  and the tenant (`AUTH_TENANT_CLAIM`, default `tenant`), which must be a tenant id.
- Scopes: the OAuth2 `scope` claim (space-separated) and/or `scp` (string or list, as Entra ID
  issues it); unknown scope names are ignored. `admin` implies every other scope.
- A token whose `jti` is in `AUTH_REVOKED_TOKEN_IDS` or in the lines of
  `AUTH_REVOKED_TOKEN_IDS_FILE` (re-read when the file changes) is refused.
- Anything wrong raises `Unauthorized` (a 401); keys that cannot be fetched at all raise
  `KeysUnavailable` (a 503: our outage, not the caller's fault). With no key configured every
  token is refused: the service fails closed.

JWKS keys are cached for `AUTH_JWKS_CACHE_SECONDS`; a token naming an unknown `kid` (the provider
rotated its keys) triggers a refetch, at most one per `AUTH_JWKS_MIN_REFRESH_SECONDS`, so forged
key ids cannot make us hammer the provider. A failed refetch keeps the keys already known.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from closeloop_common.identifiers import TENANT_ID_PATTERN
from closeloop_common.settings import CommonSettings

log = logging.getLogger(__name__)

_TENANT_RE = re.compile(TENANT_ID_PATTERN)
_REQUIRED_CLAIMS = ["exp", "iat", "jti", "iss", "aud"]
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
VerificationKey = PublicKey | jwt.PyJWK


class Scope(StrEnum):
    RESPONSES_WRITE = "responses:write"
    READ = "read"
    CASES_WRITE = "cases:write"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called: the tenant and scopes of a verified token."""

    tenant: str
    scopes: frozenset[Scope]
    token_id: str
    subject: str | None

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


class Unauthorized(Exception):
    """The token is missing, malformed, unverifiable, expired, revoked or incomplete."""


class KeysUnavailable(Exception):
    """No verification key could be had (the identity provider is unreachable)."""


class KeySource(Protocol):
    async def key_for(self, header: Mapping[str, Any]) -> VerificationKey: ...


class NoKey:
    """Fail closed: nothing is configured that could verify a token."""

    async def key_for(self, header: Mapping[str, Any]) -> VerificationKey:
        raise Unauthorized("no key is configured to verify tokens; every request is refused")


@dataclass(frozen=True, slots=True)
class StaticKey:
    """A PEM public key from the configuration."""

    key: VerificationKey

    async def key_for(self, header: Mapping[str, Any]) -> VerificationKey:
        return self.key


def algorithms_of(key: object) -> frozenset[str]:
    """The JWS algorithms a public key can verify."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_ALGORITHMS:
        return frozenset({_EC_ALGORITHMS[key.curve.name]})
    return frozenset()


def load_public_key(pem: str | bytes) -> VerificationKey:
    raw = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_public_key(raw)
    except ValueError as exc:
        raise ValueError(f"the configured public key is not a PEM public key: {exc}") from exc
    if not algorithms_of(key):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    assert isinstance(key, PublicKey)
    return key


class JwksKeys:
    """An identity provider's signing keys, fetched from its JWKS URL and cached by `kid`."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float,
        min_refresh_seconds: float,
        timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._timeout = timeout
        self._monotonic = monotonic
        self._keys: dict[str | None, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def key_for(self, header: Mapping[str, Any]) -> VerificationKey:
        kid = header.get("kid")
        found = self._find(kid) if self._fresh() else None
        if found is None:
            async with self._lock:
                # Another request may have refreshed while this one waited for the lock.
                refreshed = not self._fresh() and await self._refresh()
                found = self._find(kid)
                if found is None and self._keys is not None and not refreshed:
                    # An unknown kid: the provider may have rotated its keys.
                    await self._refresh()
                    found = self._find(kid)
        if self._keys is None:
            raise KeysUnavailable(f"the identity provider's keys could not be fetched: {self._url}")
        if found is None:
            raise Unauthorized("the token's signing key is not among the identity provider's keys")
        return found

    def _fresh(self) -> bool:
        return self._keys is not None and self._monotonic() - self._fetched_at < self._cache_seconds

    def _find(self, kid: object) -> jwt.PyJWK | None:
        if self._keys is None:
            return None
        if kid is None and len(self._keys) == 1:
            # A provider with a single key may leave `kid` out of its tokens.
            return next(iter(self._keys.values()))
        return self._keys.get(kid) if isinstance(kid, str) else None

    async def _refresh(self) -> bool:
        """Fetch the JWK Set unless one was attempted too recently; True if it was attempted."""
        now = self._monotonic()
        if self._attempted_at is not None and now - self._attempted_at < self._min_refresh_seconds:
            return False
        self._attempted_at = now
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                reply = await client.get(self._url, headers={"accept": "application/json"})
                reply.raise_for_status()
                document = reply.json()
            keys = _signing_keys(document)
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
            log.warning(
                "JWKS fetch failed; keeping the keys known so far",
                extra={"url": self._url, "error": f"{type(exc).__name__}: {exc}"},
            )
            return True
        self._keys = keys
        self._fetched_at = now
        log.info("JWKS fetched", extra={"url": self._url, "key_ids": sorted(map(str, keys))})
        return True


def _signing_keys(document: object) -> dict[str | None, jwt.PyJWK]:
    """The usable signature keys of a JWK Set, by `kid`; encryption and unknown keys are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str | None, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        keys[key.key_id] = key
    if not keys:
        raise ValueError("the JWK Set holds no usable signing key")
    return keys


class RevokedTokenIds:
    """The deny-list: ids from the settings plus the lines of a file re-read when it changes."""

    def __init__(self, ids: Iterable[str], path: Path | None) -> None:
        self._fixed = frozenset(ids)
        self._path = path
        self._from_file: frozenset[str] = frozenset()
        self._file_version: tuple[int, int] | None = None
        self._reload()

    def __contains__(self, token_id: object) -> bool:
        self._reload()
        return token_id in self._fixed or token_id in self._from_file

    def _reload(self) -> None:
        if self._path is None:
            return
        # A missing or unreadable file must not silently un-revoke anything: fail loudly.
        stat = self._path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        if version == self._file_version:
            return
        lines = self._path.read_text(encoding="utf-8").splitlines()
        self._from_file = frozenset(
            line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
        )
        self._file_version = version


class Authenticator:
    def __init__(
        self,
        *,
        keys: KeySource,
        algorithms: frozenset[str],
        issuer: str,
        audience: str,
        tenant_claim: str,
        revoked: RevokedTokenIds,
        leeway_seconds: float,
    ) -> None:
        self._keys = keys
        self._algorithms = sorted(algorithms)
        self._issuer = issuer
        self._audience = audience
        self._tenant_claim = tenant_claim
        self._revoked = revoked
        self._leeway = leeway_seconds
        self.configured = not isinstance(keys, NoKey)

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> Authenticator:
        """Load the configured key source; a bad key fails here, at start, not per request."""
        algorithms = settings.auth_algorithms
        keys: KeySource
        pem = settings.auth_public_key
        if settings.auth_public_key_file is not None:
            pem = settings.auth_public_key_file.read_text(encoding="utf-8")
        if pem is not None:
            key = load_public_key(pem)
            usable = algorithms & algorithms_of(key)
            if not usable:
                raise ValueError(
                    f"the public key verifies {sorted(algorithms_of(key))}, but AUTH_ALGORITHMS "
                    f"allows only {sorted(algorithms)}"
                )
            keys, algorithms = StaticKey(key), usable
        elif settings.auth_jwks_url is not None:
            keys = JwksKeys(
                settings.auth_jwks_url,
                cache_seconds=settings.auth_jwks_cache_seconds,
                min_refresh_seconds=settings.auth_jwks_min_refresh_seconds,
            )
        else:
            keys = NoKey()
        return cls(
            keys=keys,
            algorithms=algorithms,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            tenant_claim=settings.auth_tenant_claim,
            revoked=RevokedTokenIds(
                settings.auth_revoked_token_ids, settings.auth_revoked_token_ids_file
            ),
            leeway_seconds=settings.auth_leeway_seconds,
        )

    async def authenticate(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from exc
        if header.get("alg") not in self._algorithms:
            # Checked before any key is looked up: `none` and HMAC never reach a key. The
            # token's own `alg` is not quoted: it is the caller's text, of any length.
            raise Unauthorized(
                f"the token's algorithm is not accepted (accepted: {', '.join(self._algorithms)})"
            )
        key = await self._keys.key_for(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": [*_REQUIRED_CLAIMS, self._tenant_claim]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(_describe(exc)) from exc
        tenant = claims[self._tenant_claim]
        if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
            raise Unauthorized(f"the token's tenant is not a tenant id ({TENANT_ID_PATTERN})")
        token_id = claims["jti"]
        if not isinstance(token_id, str) or not token_id:
            raise Unauthorized("the token's jti is not a string")
        if token_id in self._revoked:
            raise Unauthorized("the token was revoked")
        subject = claims.get("sub")
        return Principal(
            tenant=tenant,
            scopes=_scopes(claims),
            token_id=token_id,
            subject=subject if isinstance(subject, str) else None,
        )


def _scopes(claims: Mapping[str, Any]) -> frozenset[Scope]:
    names: set[str] = set()
    for claim in ("scope", "scp"):
        value = claims.get(claim)
        if isinstance(value, str):
            names.update(value.split())
        elif isinstance(value, list):
            names.update(v for v in value if isinstance(v, str))
    known = {scope.value for scope in Scope}
    return frozenset(Scope(name) for name in names if name in known)


def _describe(exc: jwt.PyJWTError) -> str:
    """A short reason for the `error_description`, naming the failed check."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature does not verify"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token's issuer is not accepted"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token's audience is not accepted"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "the token's algorithm is not accepted"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the required claim {exc.claim!r}"
    return f"invalid token: {exc}"
