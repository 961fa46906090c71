"""Common settings: database URLs always use asyncpg, and production refuses development secrets."""

from __future__ import annotations

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


@pytest.mark.parametrize("tenant", ["Has Space", "Upper", "-leading-dash", "", "a" * 64])
def test_an_invalid_default_tenant_id_is_rejected(tenant: str) -> None:
    with pytest.raises(ValidationError, match="default_tenant_id"):
        CommonSettings(environment="local", default_tenant_id=tenant)


@pytest.mark.parametrize("tenant", ["default", "acme", "acme-eu_1", "a" * 63])
def test_a_valid_default_tenant_id_is_accepted(tenant: str) -> None:
    assert CommonSettings(environment="local", default_tenant_id=tenant).default_tenant_id == tenant
