"""Every source kind's adapter, by kind."""

from __future__ import annotations

from closeloop_ingest.domain.sources.base import SourceAdapter

ADAPTERS: dict[str, SourceAdapter] = {}
