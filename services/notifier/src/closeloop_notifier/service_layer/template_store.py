"""A tenant's own templates (the `templates` table) over the built-in files: read, save and
delete them, and the template a message is rendered with (previews: `template_preview`).

Versions: a tenant's template of a (kind, locale) has a version, 1 when first saved and one more
at each save; the built-in one is version 0. A save names the version it replaces
(`expected_version`, from the client's If-Match): `None` is allowed only while none is stored
(`VersionRequired` otherwise) and a version that is not the stored one is `StaleVersion`. Delete
follows the same rule and brings the built-in template back. Versions restart at 1 after a
delete, so an ETag read before a delete may match a template saved after it.

A template is saved only if it renders with every sample of its kind and language
(`domain.samples.validation_contexts`: the full sample and one with every optional value
absent); `TemplateRenderError` says what failed. Rendering runs in a worker thread: a large
template is CPU work the event loop should not wait on.

`effective_template` is what the message preparation renders with. With a `TemplateCache` it
reads the table at most once per `ttl_seconds` (5 s by default) per (tenant, kind, locale) and
process, so every replica sees a saved change within that time; the replica that saved it
forgets its entry at commit and sees it at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.db import on_commit
from closeloop_notifier.adapters.tables import templates
from closeloop_notifier.domain.builtin_templates import builtin
from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.domain.rendering import (
    DEFAULT_LOCALE,
    SUPPORTED_LOCALES,
    Renderer,
    TemplateSource,
)
from closeloop_notifier.domain.samples import validation_contexts

Origin = Literal["builtin", "tenant"]


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    """The template in force for a (kind, locale): the tenant's own or the built-in one."""

    kind: Kind
    locale: str
    source: TemplateSource
    origin: Origin
    version: int  # 0: built-in
    updated_at: datetime | None = None
    updated_by: str | None = None

    def json(self, *, with_source: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": self.kind.value,
            "locale": self.locale,
            "source": self.origin,
            "version": self.version,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }
        if with_source:
            body |= {
                "subject": self.source.subject,
                "text": self.source.text,
                "html": self.source.html,
            }
        return body


class StaleVersion(Exception):
    def __init__(self, current: int) -> None:
        super().__init__(f"the stored version is {current}: reload the template and retry")
        self.current = current


class VersionRequired(Exception):
    def __init__(self, current: int) -> None:
        super().__init__(
            f"the template has a stored version ({current}): send it in If-Match, a change is "
            "made only to the version you saw"
        )
        self.current = current


Key = tuple[str, Kind, str]


class TemplateCache:
    """Effective templates per (tenant, kind, locale) for `ttl_seconds`, at most `max_entries`
    (least recently used first out). One per process; safe within one event loop."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 5.0,
        max_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[Key, tuple[float, TemplateSource]] = OrderedDict()

    def get(self, key: Key) -> TemplateSource | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        read_at, source = entry
        if self._monotonic() - read_at >= self.ttl_seconds:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return source

    def put(self, key: Key, source: TemplateSource) -> None:
        self._entries[key] = (self._monotonic(), source)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, key: Key) -> None:
        self._entries.pop(key, None)


def _where(tenant_id: str, kind: Kind, locale: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        templates.c.tenant_id == tenant_id,
        templates.c.kind == kind.value,
        templates.c.locale == locale,
    )


def _from_row(row: sa.Row[Any]) -> StoredTemplate:
    return StoredTemplate(
        kind=Kind(row.kind),
        locale=row.locale,
        source=TemplateSource(subject=row.subject, text=row.text, html=row.html),
        origin="tenant",
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _builtin(kind: Kind, locale: str) -> StoredTemplate:
    return StoredTemplate(
        kind=kind, locale=locale, source=builtin(kind, locale), origin="builtin", version=0
    )


async def current(session: AsyncSession, tenant_id: str, kind: Kind, locale: str) -> StoredTemplate:
    """The template in force for (kind, locale): the tenant's, else the built-in one."""
    row = (
        await session.execute(sa.select(templates).where(_where(tenant_id, kind, locale)))
    ).first()
    return _from_row(row) if row is not None else _builtin(kind, locale)


async def listing(session: AsyncSession, tenant_id: str) -> list[StoredTemplate]:
    """Every kind in every supported language, with where its template comes from."""
    rows = await session.execute(sa.select(templates).where(templates.c.tenant_id == tenant_id))
    own = {(row.kind, row.locale): _from_row(row) for row in rows}
    return [
        own.get((kind.value, locale)) or _builtin(kind, locale)
        for kind in Kind
        for locale in SUPPORTED_LOCALES
    ]


async def effective_template(
    session: AsyncSession,
    tenant_id: str,
    kind: Kind,
    locale: str,
    *,
    cache: TemplateCache | None = None,
) -> TemplateSource:
    """What a message of `kind` in `locale` is rendered with: the tenant's template, else the
    built-in one; the English built-in one for a language without templates."""
    if locale not in SUPPORTED_LOCALES:
        return builtin(kind, DEFAULT_LOCALE)
    key = (tenant_id, kind, locale)
    if cache is not None and (cached := cache.get(key)) is not None:
        return cached
    source = (await current(session, tenant_id, kind, locale)).source
    if cache is not None:
        cache.put(key, source)
    return source


async def validate(renderer: Renderer, kind: Kind, locale: str, source: TemplateSource) -> None:
    """`TemplateRenderError` unless `source` renders with every sample of (kind, locale)."""
    await asyncio.to_thread(renderer.validate, source, locale, validation_contexts(kind, locale))


async def save(
    session: AsyncSession,
    renderer: Renderer,
    *,
    tenant_id: str,
    kind: Kind,
    locale: str,
    source: TemplateSource,
    expected_version: int | None,
    actor: str,
    now: datetime,
    cache: TemplateCache | None = None,
) -> StoredTemplate:
    """Validate `source` and store it as the next version of the tenant's (kind, locale)."""
    await validate(renderer, kind, locale, source)
    stored = await session.scalar(
        sa.select(templates.c.version).where(_where(tenant_id, kind, locale)).with_for_update()
    )
    values: dict[str, Any] = {"subject": source.subject, "text": source.text, "html": source.html}
    values |= {"updated_at": now, "updated_by": actor}
    if stored is None:
        if expected_version not in (None, 0):
            raise StaleVersion(0)
        created = await session.execute(
            pg_insert(templates)
            .values(tenant_id=tenant_id, kind=kind.value, locale=locale, version=1, **values)
            .on_conflict_do_nothing()
            .returning(templates)
        )
        row = created.first()
        if row is None:  # saved by someone else meanwhile
            raced = await current(session, tenant_id, kind, locale)
            raise (
                VersionRequired(raced.version)
                if expected_version is None
                else StaleVersion(raced.version)
            )
    else:
        if expected_version is None:
            raise VersionRequired(stored)
        if expected_version != stored:
            raise StaleVersion(stored)
        updated = await session.execute(
            sa.update(templates)
            .where(_where(tenant_id, kind, locale))
            .values(version=stored + 1, **values)
            .returning(templates)
        )
        row = updated.one()
    _forget_at_commit(session, cache, (tenant_id, kind, locale))
    return _from_row(row)


async def delete(
    session: AsyncSession,
    *,
    tenant_id: str,
    kind: Kind,
    locale: str,
    expected_version: int | None,
    cache: TemplateCache | None = None,
) -> bool:
    """Remove the tenant's template (the built-in one applies again); False if it had none."""
    stored = await session.scalar(
        sa.select(templates.c.version).where(_where(tenant_id, kind, locale)).with_for_update()
    )
    if stored is None:
        if expected_version not in (None, 0):
            raise StaleVersion(0)
        return False
    if expected_version is None:
        raise VersionRequired(stored)
    if expected_version != stored:
        raise StaleVersion(stored)
    await session.execute(sa.delete(templates).where(_where(tenant_id, kind, locale)))
    _forget_at_commit(session, cache, (tenant_id, kind, locale))
    return True


def _forget_at_commit(session: AsyncSession, cache: TemplateCache | None, key: Key) -> None:
    if cache is not None:
        on_commit(session, lambda: cache.forget(key))
