"""Previews: a tenant's template (or a draft of some of its parts) rendered with the sample
data of its kind and language, with values of the caller's own in place of the sample's.

The context values come as JSON, which has no dates: a string under a date field (`now`,
`deadline`, `day`, any `*_at`) is read as ISO 8601 and must carry its offset. The greeting
follows a changed name unless it is given itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.domain.rendering import Rendered, Renderer, TemplateSource, greeting_for
from closeloop_notifier.domain.samples import sample_context
from closeloop_notifier.service_layer.template_store import current


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), dict):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


def _when(name: str, value: Any) -> Any:
    """`value` with the strings under date fields read as dates (ValueError if they are not)."""
    if isinstance(value, list):
        return [_when(name, item) for item in value]
    if isinstance(value, dict):
        return {key: _when(key, item) for key, item in value.items()}
    if not isinstance(value, str):
        return value
    if name == "day":
        return date.fromisoformat(value)
    if name in ("now", "deadline") or name.endswith("_at"):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError(f"{name}: {value!r} has no time zone offset")
        return parsed
    return value


def preview_context(
    kind: Kind, locale: str, overrides: Mapping[str, Any], *, sparse: bool = False
) -> dict[str, Any]:
    """The sample context of (kind, locale) with `overrides` merged in (objects key by key).
    The greeting follows an overridden name unless it is overridden itself."""
    context = _merge(sample_context(kind, locale, sparse=sparse), _when("", dict(overrides)))
    if "greeting" not in overrides and overrides:
        context["greeting"] = greeting_for(kind, locale, context)
    return context


async def preview(
    session: AsyncSession,
    renderer: Renderer,
    *,
    tenant_id: str,
    kind: Kind,
    locale: str,
    draft: Mapping[str, str | None],
    overrides: Mapping[str, Any],
    sparse: bool = False,
) -> tuple[Rendered, Literal["draft", "builtin", "tenant"]]:
    """The template in force, with the parts given in `draft` in place of its own, rendered
    with the sample data; `TemplateRenderError` when it does not render."""
    stored = await current(session, tenant_id, kind, locale)
    given = {part: text for part, text in draft.items() if text is not None}
    source = TemplateSource(
        subject=given.get("subject", stored.source.subject),
        text=given.get("text", stored.source.text),
        html=given.get("html", stored.source.html),
    )
    context = preview_context(kind, locale, overrides, sparse=sparse)
    rendered = await asyncio.to_thread(renderer.render, source, locale, context, cache=not given)
    return rendered, ("draft" if given else stored.origin)
