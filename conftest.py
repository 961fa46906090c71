"""Test-wide set-up: a test database and a private topic prefix per run, on the real infra.

Unit tests need none of it. Tests under `integration/` and `e2e/` folders are marked as such and
use the real Kafka broker and PostgreSQL that `make infra-up` started (or DATABASE_URL and
KAFKA_BOOTSTRAP_SERVERS when given). Each run gets its own topic prefix, so tests never read
events of an earlier run or of a `make run` on the same broker.

Authentication: each run makes its own key pair in a temporary folder; every service (in-process
or as a process) verifies tokens with its public key (`AUTH_PUBLIC_KEY_FILE`), and the `bearer`
fixture mints the `Authorization` header of a token for a tenant and scopes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from closeloop_common.tokens import generate_key_pair, mint_token

RUN_ID = uuid.uuid4().hex[:8]


def _test_database_url() -> str:
    """TEST_DATABASE_URL, else DATABASE_URL's server with the database `<name>_test`, else the
    local `closeloop_test` that `make infra-up` creates. The test database must exist."""
    if explicit := os.environ.get("TEST_DATABASE_URL"):
        return explicit
    if user_url := os.environ.get("DATABASE_URL"):
        base, _, rest = user_url.rpartition("/")
        name, sep, query = rest.partition("?")
        return f"{base}/{name}_test{sep}{query}"
    return "postgresql+asyncpg://closeloop:closeloop@127.0.0.1:5432/closeloop_test"


TEST_DATABASE_URL = _test_database_url()
AUTH_KEYS = generate_key_pair(Path(tempfile.mkdtemp(prefix="closeloop-test-auth-")))
TEST_ENV = {
    "ENVIRONMENT": "test",
    "DATABASE_URL": TEST_DATABASE_URL,
    "KAFKA_TOPIC_PREFIX": f"test-{RUN_ID}",
    "KAFKA_TOPIC_PARTITIONS": "3",
    "OUTBOX_POLL_INTERVAL_SECONDS": "0.2",
    "LOG_FORMAT": "json",
    "AUTH_PUBLIC_KEY_FILE": str(AUTH_KEYS.public),
}
os.environ.update(TEST_ENV)

Bearer = Callable[..., dict[str, str]]


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(AUTH_KEYS.private.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def bearer() -> Bearer:
    """`bearer(tenant, *scopes, subject=None)`: the Authorization header of a fresh 10-minute
    token (naming `subject`, the caller, when given)."""
    private_key = AUTH_KEYS.private.read_bytes()

    def header(
        tenant: str, *scopes: str, ttl_seconds: int = 600, subject: str | None = None
    ) -> dict[str, str]:
        token = mint_token(
            private_key, tenant=tenant, scopes=scopes, ttl_seconds=ttl_seconds, subject=subject
        )
        return {"Authorization": f"Bearer {token}"}

    return header


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    faults: list[pytest.Item] = []
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        elif "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "faults" in parts:
            faults.append(item)
    # The fault run (tests/faults, `make test-faults`) brings its own broker and database and
    # takes minutes: it runs only when asked for by marker (`-m faults`), so `make test`'s plain
    # `pytest` does not run it a second time.
    if faults and "faults" not in (config.getoption("markexpr") or ""):
        config.hook.pytest_deselected(items=faults)
        items[:] = [item for item in items if item not in faults]


@pytest.fixture(scope="session")
def infra() -> Iterator[dict[str, str]]:
    """Migrated test database and this run's topics; the topics are deleted afterwards."""
    from closeloop_common.kafka.topics import delete_topics, ensure_topics
    from closeloop_common.settings import CommonSettings
    from closeloop_devtools.stack import Stack

    Stack(env=TEST_ENV, log_dir=Path(".infra/logs")).migrate()
    settings = CommonSettings()
    asyncio.run(_retire_earlier_runs(settings.database_url))
    asyncio.run(ensure_topics(settings))
    yield TEST_ENV
    asyncio.run(delete_topics(settings))


async def _retire_earlier_runs(database_url: str) -> None:
    """An aborted earlier run can leave outbox rows for topics that were deleted with it (and
    pending messages); the relay would wait on them forever, so they are retired first."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from closeloop_common.services import SERVICES

    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for schema in (s.schema for s in SERVICES):
                await conn.execute(
                    text(
                        f"UPDATE {schema}.outbox SET published_at = now() WHERE published_at IS NULL"
                    )
                )
            await conn.execute(
                text(
                    "UPDATE notifier.messages SET status = 'failed', next_attempt_at = NULL, "
                    "last_error = 'retired by the test set-up' "
                    "WHERE status IN ('pending', 'sending', 'held')"
                )
            )
            await conn.execute(
                text(
                    "UPDATE notifier.campaigns SET status = 'cancelled', finished_at = now() "
                    "WHERE status IN ('expanding', 'sending', 'paused')"
                )
            )
    finally:
        await engine.dispose()
