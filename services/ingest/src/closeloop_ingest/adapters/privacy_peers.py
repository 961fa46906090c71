"""The other services' article-15 exports, asked over HTTP for ingest's combined export.

Each service answers `POST /v1/privacy/export` with what it holds about the identifiers ingest
resolved. The question carries the caller's own token (as the orchestrator asks scoring): the
peer verifies it and answers for that token's tenant and scope only; ingest holds no token of its
own. A peer that cannot be reached, times out, or answers anything but 200 is `unavailable`,
never a failed export.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from closeloop_common.privacy import SubjectIdentifiers

log = logging.getLogger(__name__)

EXPORT = "/v1/privacy/export"


class PeerExports:
    def __init__(
        self,
        base_urls: Mapping[str, str],
        *,
        timeout: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._base_urls = dict(base_urls)
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def gather(
        self, ids: SubjectIdentifiers, *, authorization: str
    ) -> tuple[dict[str, Any], list[str]]:
        """(service -> its export, services that did not answer), asked all at once."""
        names = list(self._base_urls)
        answers = await asyncio.gather(*(self._ask(name, ids, authorization) for name in names))
        found = {n: a for n, a in zip(names, answers, strict=True) if a is not None}
        return found, [n for n, a in zip(names, answers, strict=True) if a is None]

    async def _ask(
        self, name: str, ids: SubjectIdentifiers, authorization: str
    ) -> dict[str, Any] | None:
        url = self._base_urls[name].rstrip("/") + EXPORT
        try:
            answer = await self._client.post(
                url,
                content=ids.model_dump_json(),
                headers={"Authorization": authorization, "Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            log.warning(
                "privacy export: a service did not answer",
                extra={"service": name, "error": type(exc).__name__},
            )
            return None
        if answer.status_code != 200:
            log.warning(
                "privacy export: a service refused",
                extra={"service": name, "status": answer.status_code},
            )
            return None
        try:
            body = answer.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None
