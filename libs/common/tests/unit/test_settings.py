"""Common settings: database URLs always use asyncpg, production refuses development secrets, and
token verification is configured with asymmetric algorithms and one key source."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from closeloop_common.settings import CommonSettings

REAL_PASSWORD_URL = "postgresql+asyncpg://closeloop:s3cr3t-from-vault@db.internal:5432/closeloop"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/x", "postgresql+asyncpg://u:p@db:5432/x"),
        ("postgresql://u:p@db:5432/x", "postgresql+asyncpg://u:p@db:5432/x"),
        ("postgresql+asyncpg://u:p@db:5432/x", "postgresql+asyncpg://u:p@db:5432/x"),
    ],
)
def test_database_url_is_normalised_to_the_asyncpg_driver(given: str, expected: str) -> None:
    settings = CommonSettings(environment="local", database_url=given)
    assert settings.database_url == expected


def test_production_refuses_the_development_database_password() -> None:
    with pytest.raises(ValidationError, match="development password"):
        CommonSettings(
            environment="production",
            database_url="postgresql+asyncpg://closeloop:closeloop@db.internal:5432/closeloop",
        )


def test_production_refuses_the_development_password_in_a_postgres_url_too() -> None:
    with pytest.raises(ValidationError, match="development password"):
        CommonSettings(
            environment="production", database_url="postgres://closeloop:closeloop@db:5432/x"
        )


def test_production_accepts_a_real_database_password() -> None:
    settings = CommonSettings(environment="production", database_url=REAL_PASSWORD_URL)
    assert settings.environment == "production"
    assert settings.database_url == REAL_PASSWORD_URL


@pytest.mark.parametrize("environment", ["local", "test"])
def test_local_and_test_accept_the_development_database_password(environment: str) -> None:
    url = "postgresql+asyncpg://closeloop:closeloop@127.0.0.1:5432/closeloop"
    settings = CommonSettings(environment=environment, database_url=url)
    assert settings.database_url == url


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["EdDSA", "HS512"]])
def test_only_asymmetric_token_algorithms_are_accepted(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError, match="auth_algorithms"):
        CommonSettings(environment="local", auth_algorithms=algorithms)


def test_one_token_key_source_at_most(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="only one of"):
        CommonSettings(
            environment="local",
            auth_public_key_file=tmp_path / "public.pem",
            auth_jwks_url="https://sso.example/jwks",
        )


def test_production_refuses_a_jwks_url_without_tls() -> None:
    with pytest.raises(ValidationError, match="https"):
        CommonSettings(
            environment="production",
            database_url=REAL_PASSWORD_URL,
            auth_public_key_file=None,
            auth_jwks_url="http://sso.example/jwks",
        )
