"""Each service's migrations build exactly the tables its code uses: Alembic's autogenerate
comparison of the migrated schema against the service's SQLAlchemy metadata finds nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from closeloop_common.settings import CommonSettings
from closeloop_ingest.adapters import tables as ingest
from closeloop_notifier.adapters import tables as notifier
from closeloop_orchestrator.adapters import tables as orchestrator
from closeloop_scoring.adapters import tables as scoring


@pytest.mark.parametrize(
    "service", [ingest, scoring, orchestrator, notifier], ids=lambda m: m.SCHEMA
)
async def test_migrated_schema_matches_the_service_tables(
    infra: dict[str, str], service: Any
) -> None:
    schema: str = service.SCHEMA
    metadata: sa.MetaData = service.metadata

    def include_name(name: str | None, type_: str, _parent: Any) -> bool:
        if type_ == "schema":
            return name == schema
        return not (type_ == "table" and name == "alembic_version")

    def diff(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={"include_schemas": True, "include_name": include_name, "compare_type": True},
        )
        return list(compare_metadata(context, metadata))

    engine = create_async_engine(CommonSettings().database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []
