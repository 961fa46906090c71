from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from .support import corrected, feed, get, received

MAY_5 = datetime(2024, 5, 5, 12, 0, tzinfo=UTC)


async def test_smoke(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, bearer: Callable[..., dict[str, str]]
) -> None:
    r1 = received(10, MAY_5, region="PL", product="billing", comment="Obsługa super")
    r2 = received(3, MAY_5, region="PL", product="app", account="acme", comment="obsluga fatalna")
    await feed(app, tenant, [r1, r2, received(8, MAY_5, region="DE", product="billing")])
    h = bearer(tenant, "read")
    print(await get(client, h, "/v1/nps"))
    print(await get(client, h, "/v1/nps", region="PL", product="billing", days=3660))
    await feed(app, tenant, [corrected(r1, 2, score=0)])
    print(await get(client, h, "/v1/nps", region="PL"))
    print(
        await get(
            client,
            h,
            "/v1/nps/trend",
            **{"from": "2024-05-01", "to": "2024-06-01"},
            granularity="week",
        )
    )
    print(await get(client, h, "/v1/nps/breakdown", by="region"))
    print(await get(client, h, "/v1/drivers", window="all"))
    print(await get(client, h, "/v1/accounts/acme/nps"))
    print(await get(client, h, "/v1/accounts", weighted=True))
    r = await client.post(
        "/v1/what-if",
        headers=h,
        json={
            "scenario": {"kind": "theme-detractors-become-passives", "theme": "customer service"},
            "window": "all",
        },
    )
    print(r.status_code, r.json())
