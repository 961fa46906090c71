"""Events the plumbing tests send through the real broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from closeloop_common.clock import SystemClock
from closeloop_common.events import CloudEvent, Customer, ResponseReceivedV1, categorize, new_event


def response_event(
    response_id: str, customer_id: str = "c-1", score: int = 3, *, tenant: str = "t-it"
) -> CloudEvent[Any]:
    now = datetime.now(UTC)
    data = ResponseReceivedV1(
        response_id=response_id,
        survey_id="s",
        customer=Customer(id=customer_id),
        score=score,
        category=categorize(score),
        answered_at=now,
        received_at=now,
        source="test",
    )
    return new_event(data, tenant_id=tenant, source="/test", clock=SystemClock())
