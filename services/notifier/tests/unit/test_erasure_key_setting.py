"""The key of erased respondents' address hashes: production refuses the development default."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from closeloop_notifier.config import NotifierSettings

REAL_DATABASE = "postgresql+asyncpg://closeloop:s3cret-Pa55@db.internal:5432/closeloop"
REAL_UNSUBSCRIBE = SecretStr("a-real-unsubscribe-secret")


def test_production_refuses_the_development_erasure_key() -> None:
    with pytest.raises(ValidationError, match="NOTIFIER_ERASURE_KEY"):
        NotifierSettings(
            environment="production",
            database_url=REAL_DATABASE,
            notifier_unsubscribe_secret=REAL_UNSUBSCRIBE,
        )


def test_production_accepts_a_real_erasure_key() -> None:
    settings = NotifierSettings(
        environment="production",
        database_url=REAL_DATABASE,
        notifier_unsubscribe_secret=REAL_UNSUBSCRIBE,
        notifier_erasure_key=SecretStr("a-real-erasure-key"),
    )
    assert settings.notifier_erasure_key.get_secret_value() == "a-real-erasure-key"
