"""Tenants' messaging settings: stored versions (`PUT /v1/settings`) and a short-lived cache.

The consumer and the dispatcher read settings for every event or batch; they read them through
`SettingsStore.get`, which keeps each tenant's settings for `ttl` seconds, so a saved change
applies within that time in every replica, without a restart. The webhook secret is stored but
never shown: a saved version without one keeps the previous secret while the URL is the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_notifier.adapters.tables import tenant_settings
from closeloop_notifier.domain.tenant_settings import MessagingSettings, TeamChannel


class StaleSettings(Exception):
    def __init__(self, current: int) -> None:
        super().__init__(f"the settings are at version {current}")
        self.current = current


def stored_form(settings: MessagingSettings) -> dict[str, Any]:
    """The JSON stored: the secret in clear (the database is the secret's store)."""
    data = settings.model_dump(mode="json")
    secret = settings.team_channel.webhook_secret
    data["team_channel"]["webhook_secret"] = secret.get_secret_value() if secret else None
    return data


def public_form(settings: MessagingSettings) -> dict[str, Any]:
    """The JSON shown: whether a secret is set, never the secret."""
    data = settings.model_dump(mode="json")
    data["team_channel"]["webhook_secret"] = "set" if settings.team_channel.webhook_secret else None
    return data


async def load(
    session: AsyncSession, tenant_id: str, defaults: MessagingSettings | None = None
) -> tuple[MessagingSettings, int]:
    """The tenant's settings and their version (0 and `defaults` when none were saved)."""
    row = (
        await session.execute(
            sa.select(tenant_settings.c.settings, tenant_settings.c.version).where(
                tenant_settings.c.tenant_id == tenant_id
            )
        )
    ).one_or_none()
    if row is None:
        return defaults or MessagingSettings(), 0
    return MessagingSettings.model_validate(row.settings), row.version


async def save(
    session: AsyncSession,
    *,
    tenant_id: str,
    settings: MessagingSettings,
    expected_version: int,
    actor: str,
    now: datetime,
    defaults: MessagingSettings | None = None,
) -> tuple[MessagingSettings, int]:
    """Store a new version if `expected_version` is the current one (`StaleSettings` if not)."""
    current, version = await load(session, tenant_id, defaults)
    if version != expected_version:
        raise StaleSettings(version)
    kept = current.team_channel
    wanted = settings.team_channel
    if (
        wanted.webhook_secret is None
        and kept.webhook_secret
        and wanted.webhook_url == kept.webhook_url
    ):
        settings = settings.model_copy(
            update={
                "team_channel": TeamChannel(
                    kind=wanted.kind,
                    webhook_url=wanted.webhook_url,
                    webhook_secret=kept.webhook_secret,
                )
            }
        )
    values = {
        "settings": stored_form(settings),
        "version": version + 1,
        "updated_at": now,
        "updated_by": actor,
    }
    statement = pg_insert(tenant_settings).values(tenant_id=tenant_id, **values)
    written = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=[tenant_settings.c.tenant_id],
            set_=values,
            where=tenant_settings.c.version == version,
        ).returning(tenant_settings.c.version)
    )
    if written is None:  # another writer got there between our read and write
        raise StaleSettings(version + 1)
    return settings, version + 1


class SettingsStore:
    """`get(tenant)`: the tenant's settings (else `defaults`), at most `ttl` seconds old."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        defaults: MessagingSettings | None = None,
        ttl: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.defaults = defaults or MessagingSettings()
        self._sessions = sessions
        self._ttl = ttl
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, MessagingSettings]] = {}

    async def get(self, tenant_id: str) -> MessagingSettings:
        now = self._monotonic()
        cached = self._cache.get(tenant_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        async with self._sessions() as session:
            settings, _ = await load(session, tenant_id, self.defaults)
        self._cache[tenant_id] = (now, settings)
        return settings

    def forget(self, tenant_id: str) -> None:
        """Drop the cached settings (this replica saved new ones)."""
        self._cache.pop(tenant_id, None)
