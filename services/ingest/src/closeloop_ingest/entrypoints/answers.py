"""How ingest answers a write: the status code and JSON for a list of outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from closeloop_ingest.service_layer.intake import NEW_STATUSES, Outcome


def outcome_json(outcome: Outcome, tenant_id: str) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "tenant_id": tenant_id,
        "response_id": outcome.response_id,
        "version": outcome.version,
        "category": outcome.category.value,
        "event_id": outcome.event_id,
    }


def status_code_of(outcomes: Sequence[Outcome]) -> int:
    """202 when something new was accepted, 200 when all of it was known already."""
    return 202 if any(o.status in NEW_STATUSES for o in outcomes) else 200


def summary(outcomes: Sequence[Outcome]) -> str:
    """One outcome label for a request (the metrics' `outcome`)."""
    statuses = {o.status for o in outcomes}
    if len(statuses) == 1:
        return next(iter(statuses))
    return "partial" if statuses else "ignored"
