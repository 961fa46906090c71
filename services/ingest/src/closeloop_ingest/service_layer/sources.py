"""Survey-tool sources: stored in `ingest.sources`, cached in every replica.

The webhook path never queries the database for its source: `SourceDirectory.get` answers from
memory. A change made through this replica's API is in its cache at once; a change made through
another replica is picked up by the refresh worker within `SOURCES_REFRESH_SECONDS`, which reads
every source's revision (a few bytes a row) and loads only the definitions whose revision moved.
A delete is a soft delete that moves the revision too, so it travels the same way.

Start-up applies `SOURCES_FILE` (GitOps): each source in it is created or replaced; sources not
in it are left alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common.clock import Clock
from closeloop_common.db import transaction
from closeloop_common.loop import repeat
from closeloop_ingest.adapters.tables import sources
from closeloop_ingest.domain.sources.base import SourceDefinition, SourceSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredSource:
    definition: SourceDefinition
    revision: int
    created_at: datetime
    updated_at: datetime


class SourcesFileError(ValueError):
    """The sources file is missing, unreadable or invalid."""


class SourceDirectory:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock,
        refresh_seconds: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._cache: dict[tuple[str, str], StoredSource] = {}

    def get(self, tenant_id: str, name: str) -> SourceDefinition | None:
        """The live source, from memory."""
        stored = self._cache.get((tenant_id, name))
        return None if stored is None else stored.definition

    def stored(self, tenant_id: str, name: str) -> StoredSource | None:
        return self._cache.get((tenant_id, name))

    def of_tenant(self, tenant_id: str) -> list[StoredSource]:
        return sorted(
            (s for (t, _), s in self._cache.items() if t == tenant_id),
            key=lambda s: s.definition.name,
        )

    async def put(self, tenant_id: str, name: str, spec: SourceSpec) -> tuple[StoredSource, bool]:
        """Create or replace a source; (it, whether it was created)."""
        definition = SourceDefinition(tenant_id=tenant_id, name=name, **_fields_of(spec))
        now = self._clock.now()
        async with transaction(self._sessions) as session:
            row = (
                await session.execute(
                    pg_insert(sources)
                    .values(
                        tenant_id=tenant_id,
                        name=name,
                        kind=definition.kind,
                        definition=definition.storable(),
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_update(
                        index_elements=[sources.c.tenant_id, sources.c.name],
                        set_={
                            "kind": definition.kind,
                            "definition": definition.storable(),
                            "revision": sa.func.nextval("ingest.source_revisions"),
                            "updated_at": now,
                            # A source deleted and put again is new again.
                            "created_at": sa.case(
                                (sources.c.deleted_at.is_not(None), now),
                                else_=sources.c.created_at,
                            ),
                            "deleted_at": None,
                        },
                    )
                    .returning(sources.c.revision, sources.c.created_at, sources.c.updated_at)
                )
            ).one()
        stored = StoredSource(definition, row.revision, row.created_at, row.updated_at)
        self._cache[(tenant_id, name)] = stored
        return stored, row.created_at == now

    async def delete(self, tenant_id: str, name: str) -> bool:
        now = self._clock.now()
        async with transaction(self._sessions) as session:
            deleted = await session.scalar(
                sa.update(sources)
                .where(
                    sources.c.tenant_id == tenant_id,
                    sources.c.name == name,
                    sources.c.deleted_at.is_(None),
                )
                .values(
                    deleted_at=now,
                    updated_at=now,
                    revision=sa.func.nextval("ingest.source_revisions"),
                )
                .returning(sources.c.name)
            )
        self._cache.pop((tenant_id, name), None)
        return deleted is not None

    async def refresh(self) -> int:
        """Bring the cache in line with the database; how many sources changed."""
        async with self._sessions() as session:
            revisions = {
                (row.tenant_id, row.name): row.revision
                for row in await session.execute(
                    sa.select(sources.c.tenant_id, sources.c.name, sources.c.revision).where(
                        sources.c.deleted_at.is_(None)
                    )
                )
            }
            gone = [key for key in self._cache if key not in revisions]
            changed = [
                key
                for key, revision in revisions.items()
                if key not in self._cache or self._cache[key].revision != revision
            ]
            loaded = await self._load(session, changed) if changed else {}
        for key in gone:
            del self._cache[key]
        self._cache.update(loaded)
        return len(gone) + len(loaded)

    async def _load(
        self, session: AsyncSession, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredSource]:
        rows = await session.execute(
            sa.select(sources).where(
                sa.tuple_(sources.c.tenant_id, sources.c.name).in_(keys),
                sources.c.deleted_at.is_(None),
            )
        )
        loaded: dict[tuple[str, str], StoredSource] = {}
        for row in rows:
            try:
                definition = SourceDefinition.model_validate(row.definition)
            except ValidationError:
                # Stored by an older build with other rules: kept out, never crashing the rest.
                log.exception("stored source is not valid; ignored", extra={"source": row.name})
                continue
            loaded[(row.tenant_id, row.name)] = StoredSource(
                definition, row.revision, row.created_at, row.updated_at
            )
        return loaded

    async def run(self) -> None:
        """The refresh worker."""

        async def step() -> bool:
            await self.refresh()
            return False

        await repeat(step, wake=asyncio.Event(), idle=self._refresh_seconds, name="sources")

    async def apply_file(self, path: Path) -> int:
        """Create or replace every source the file defines; how many."""
        definitions = load_sources_file(path)
        for definition in definitions:
            spec = SourceSpec.model_validate(
                {k: v for k, v in definition.storable().items() if k not in ("tenant_id", "name")}
            )
            await self.put(definition.tenant_id, definition.name, spec)
        return len(definitions)


def _fields_of(spec: SourceSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in SourceSpec.model_fields}


def load_sources_file(path: Path) -> list[SourceDefinition]:
    """Sources from a TOML or (by a `.json` suffix) JSON file:

    ```toml
    [tenants.acme.sources.typeform-nps]
    kind = "typeform"
    secrets = ["env:ACME_TYPEFORM_SECRET"]
    [tenants.acme.sources.typeform-nps.fields]
    account_id = "$.form_response.hidden.account"
    ```
    """
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise SourcesFileError(f"{path}: {exc}") from exc
    tenants = raw.get("tenants", {}) if isinstance(raw, dict) else None
    if not isinstance(tenants, dict):
        raise SourcesFileError(f"{path}: expected a table `tenants`")
    definitions: list[SourceDefinition] = []
    for tenant_id, tenant in tenants.items():
        for name, body in (tenant or {}).get("sources", {}).items():
            try:
                body = dict(body)
                body["secrets"] = [_resolve_secret(s) for s in body.get("secrets", [])]
                if isinstance(body.get("api"), dict) and "token" in body["api"]:
                    body["api"] = dict(body["api"], token=_resolve_secret(body["api"]["token"]))
                definitions.append(
                    SourceDefinition.model_validate({**body, "tenant_id": tenant_id, "name": name})
                )
            except ValidationError as exc:
                # Never the input values: they hold secrets.
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '<source>'}: {e['msg']}"
                    for e in exc.errors(include_input=False, include_url=False)
                )
                raise SourcesFileError(f"{path}: source {tenant_id}/{name}: {problems}") from None
            except (KeyError, TypeError, ValueError) as exc:
                raise SourcesFileError(f"{path}: source {tenant_id}/{name}: {exc}") from None
    return definitions


def _resolve_secret(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise KeyError(f"environment variable {name} (named by a secret) is not set")
        return os.environ[name]
    return value
