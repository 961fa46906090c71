"""Which set-up a tenant's cases are decided with, and where it came from; reloaded when changed.

Per tenant and part (`organisation`, `rules`), the first of these that has one wins:
1. the admin API's stored version (`tenant_setup`; `version` grows per change);
2. the set-up file (`ORCHESTRATOR_SETUP_FILE`), re-read when its modification time changes;
3. the service's settings and `TENANTS_FILE` (`OrchestratorSettings.default_setup`).
A consumer batch asks `current(session, tenant)`: one small query of the stored versions, and a
reload only when a version (or the file) changed. So a rule saved through the API applies from
the next batch on, in every replica, without a restart. A stored part is validated when saved
(the API refuses a bad one); a bad set-up file is refused when read (the last good one stays, and
the error is logged) so a typo in the file never stops cases from opening.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.tenants import TenantConfig, TenantDirectory, TenantId
from closeloop_orchestrator.adapters.tables import tenant_setup
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.domain.case_rules import RuleSet
from closeloop_orchestrator.domain.setup import Organisation, TenantSetup

log = logging.getLogger(__name__)

Part = Literal["organisation", "rules"]
PARTS: tuple[Part, ...] = ("organisation", "rules")
Source = Literal["api", "file", "settings"]


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    organisation: Organisation | None = None
    rules: RuleSet | None = None


class SetupFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: dict[TenantId, FileEntry] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadedSetup:
    setup: TenantSetup
    versions: Mapping[Part, int]  # stored versions; 0: not stored (file or settings)
    sources: Mapping[Part, Source]


def read_setup_file(path: Path) -> SetupFile:
    raw = path.read_bytes()
    data: Any = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    return SetupFile.model_validate(data)


class SetupStore:
    def __init__(self, settings: OrchestratorSettings, tenants: TenantDirectory) -> None:
        self._settings = settings
        self._tenants = tenants
        self._path = settings.orchestrator_setup_file
        self._file = SetupFile() if self._path is None else read_setup_file(self._path)
        self._file_mtime = None if self._path is None else os.stat(self._path).st_mtime_ns
        self._cache: dict[str, tuple[tuple[int, ...], int | None, LoadedSetup]] = {}

    def _refresh_file(self) -> None:
        if self._path is None:
            return
        try:
            mtime = os.stat(self._path).st_mtime_ns
            if mtime == self._file_mtime:
                return
            self._file = read_setup_file(self._path)
            self._file_mtime = mtime
            log.info("set-up file re-read", extra={"path": str(self._path)})
        except (OSError, ValueError, ValidationError) as exc:
            log.error(
                "set-up file not re-read; the last good one stays",
                extra={"path": str(self._path), "error": str(exc)[:2000]},
            )

    def fallback(self, tenant_id: str, part: Part) -> tuple[Any, Source]:
        """A part as the set-up file or the settings give it (the API stored none)."""
        entry = self._file.tenants.get(tenant_id)
        found = None if entry is None else getattr(entry, part)
        if found is not None:
            return found, "file"
        default = self._settings.default_setup(self._tenant_config(tenant_id))
        return getattr(default, part), "settings"

    def _tenant_config(self, tenant_id: str) -> TenantConfig | None:
        return self._tenants.of(tenant_id) if tenant_id in self._tenants else None

    async def stored(self, session: AsyncSession, tenant_id: str) -> dict[Part, int]:
        rows = await session.execute(
            sa.select(tenant_setup.c.kind, tenant_setup.c.version).where(
                tenant_setup.c.tenant_id == tenant_id
            )
        )
        return {row.kind: row.version for row in rows}

    async def current(self, session: AsyncSession, tenant_id: str) -> LoadedSetup:
        """The tenant's set-up as it is now (reloaded if a stored version or the file changed)."""
        self._refresh_file()
        versions = await self.stored(session, tenant_id)
        key = tuple(versions.get(part, 0) for part in PARTS)
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] == key and cached[1] == self._file_mtime:
            return cached[2]
        parts: dict[Part, Any] = {}
        sources: dict[Part, Source] = {}
        bodies = {}
        if versions:
            rows = await session.execute(
                sa.select(tenant_setup.c.kind, tenant_setup.c.body).where(
                    tenant_setup.c.tenant_id == tenant_id
                )
            )
            bodies = {row.kind: row.body for row in rows}
        for part in PARTS:
            if part in bodies:
                model = Organisation if part == "organisation" else RuleSet
                parts[part], sources[part] = model.model_validate(bodies[part]), "api"
            else:
                parts[part], sources[part] = self.fallback(tenant_id, part)
        try:
            setup = TenantSetup(organisation=parts["organisation"], rules=parts["rules"])
        except ValidationError as exc:
            # Stored parts are checked against each other when saved, but a part of the file
            # may not fit a stored one (a rule naming a team only the file had). Cases keep
            # opening under the settings' set-up meanwhile; the error says what to mend.
            log.error(
                "set-up parts do not fit; using the settings' set-up",
                extra={"tenant_id": tenant_id, "error": str(exc)[:2000]},
            )
            setup = self._settings.default_setup(self._tenant_config(tenant_id))
            sources = {part: "settings" for part in PARTS}
        loaded = LoadedSetup(
            setup=setup,
            versions={part: versions.get(part, 0) for part in PARTS},
            sources=sources,
        )
        self._cache[tenant_id] = (key, self._file_mtime, loaded)
        return loaded
