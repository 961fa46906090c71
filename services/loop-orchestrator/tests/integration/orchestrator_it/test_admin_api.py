"""The admin set-up against the real PostgreSQL: versions and ETags of the organisation and
the rules, parts that do not fit refused, the set-up file re-read when it changes (a broken one
ignored), and retroactive rule runs: the dry run opens nothing, the run opens only the cases that
do not exist yet, a second run opens none."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from closeloop_common.db import transaction
from closeloop_common.tenants import TenantDirectory
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.domain.case_rules import RuleSet
from closeloop_orchestrator.service_layer import admin
from closeloop_orchestrator.service_layer.setup_store import SetupStore

from .support import NOW, PROBLEM, answer, feed, put_setup, runtime_of, team

ORGANISATION: dict[str, Any] = {"teams": [team("support", [("anna", ["pl"])])]}


async def test_setup_parts_are_versioned_and_a_stale_or_unfitting_one_is_refused(
    client: httpx.AsyncClient,
    tenant: str,
    headers: dict[str, str],
    bearer: Callable[..., dict[str, str]],
) -> None:
    first = await client.get("/v1/setup/organisation", headers=headers)
    assert (first.headers["ETag"], first.json()["source"]) == ('"0"', "settings")

    stored = await client.put(
        "/v1/setup/organisation", json=ORGANISATION, headers=headers | {"If-Match": '"0"'}
    )
    stale = await client.put(
        "/v1/setup/organisation", json=ORGANISATION, headers=headers | {"If-Match": '"0"'}
    )
    unknown_team = await client.put(
        "/v1/setup/rules",
        json={"rules": [{"name": "vip", "then": {"team_id": "nope"}}]},
        headers=headers | {"If-Match": '"0"'},
    )
    no_calendar = await client.put(
        "/v1/setup/rules",
        json={"rules": [{"name": "fast", "then": {"business_hours": True}}]},
        headers=headers | {"If-Match": '"0"'},
    )
    no_mailbox = await client.put(
        "/v1/setup/organisation",
        json={"teams": [{"id": "t", "queue": "q"}]},
        headers=headers | {"If-Match": '"1"'},
    )
    not_admin = await client.get("/v1/setup/rules", headers=bearer(tenant, "read"))

    assert stored.status_code == 200
    assert stored.headers["ETag"] == '"1"'
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"1"'
    for refused, kind in ((unknown_team, "setup-refused"), (no_calendar, "setup-refused"),
                          (no_mailbox, "validation")):  # fmt: skip
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == PROBLEM
        assert refused.json()["type"] == f"urn:closeloop:problem:{kind}"
    assert not_admin.status_code == 403
    now = (await client.get("/v1/setup/organisation", headers=headers)).json()
    assert (now["version"], now["source"]) == (1, "api")
    assert now["organisation"]["teams"][0]["id"] == "support"


async def test_the_setup_file_is_reread_when_it_changes_and_a_broken_one_is_ignored(
    app: FastAPI, tenant: str, tmp_path: Path
) -> None:
    path = tmp_path / "setup.json"

    def write(rules: Any, mtime: int) -> None:
        path.write_text(json.dumps({"tenants": {tenant: {"rules": rules}}}))
        os.utime(path, (mtime, mtime))

    write({"rules": [{"name": "first"}]}, 1_000)
    store = SetupStore(OrchestratorSettings(orchestrator_setup_file=path), TenantDirectory())
    async with runtime_of(app).sessions() as session:
        first = await store.current(session, tenant)
        write({"rules": [{"name": "second"}]}, 2_000)
        second = await store.current(session, tenant)
        path.write_text("{not json")
        os.utime(path, (3_000, 3_000))
        broken = await store.current(session, tenant)

    assert [r.name for r in first.setup.rules.rules] == ["first"]
    assert first.sources["rules"] == "file"
    assert first.sources["organisation"] == "settings"
    assert [r.name for r in second.setup.rules.rules] == ["second"]
    assert [r.name for r in broken.setup.rules.rules] == ["second"]


async def test_a_file_that_no_longer_fits_the_stored_rules_falls_back_to_the_settings(
    app: FastAPI, tenant: str, tmp_path: Path
) -> None:
    path = tmp_path / "setup.json"

    def write(team_id: str, mtime: int) -> None:
        organisation = {"teams": [team(team_id, [("anna", ["pl"])])]}
        path.write_text(json.dumps({"tenants": {tenant: {"organisation": organisation}}}))
        os.utime(path, (mtime, mtime))

    write("vip", 1_000)
    store = SetupStore(OrchestratorSettings(orchestrator_setup_file=path), TenantDirectory())
    rules = RuleSet.model_validate({"rules": [{"name": "vip", "then": {"team_id": "vip"}}]})
    async with transaction(runtime_of(app).sessions) as session:
        await admin.save_part(
            session, store, tenant_id=tenant, part="rules", body=rules,
            expected_version=0, actor="test", now=NOW,
        )  # fmt: skip
    write("other", 2_000)
    async with runtime_of(app).sessions() as session:
        loaded = await store.current(session, tenant)

    assert loaded.sources == {"organisation": "settings", "rules": "settings"}
    assert loaded.setup.rules.rules == ()


async def test_a_retroactive_run_opens_only_missing_cases_after_its_dry_run(
    app: FastAPI, client: httpx.AsyncClient, tenant: str, headers: dict[str, str]
) -> None:
    no_promoters = {
        "rules": [{"name": "no promoter cases", "match": {"categories": ["promoter"]},
                   "then": {"open_case": False}}],
        "defaults": {"team_id": "support"},
    }  # fmt: skip
    await put_setup(client, headers, organisation=ORGANISATION, rules=no_promoters)
    old = answer("r-old", score=10, answered_at=NOW - timedelta(days=30))
    await feed(app, tenant, old, answer("r-p1", score=9), answer("r-p2", score=10),
               answer("r-d1", score=2))  # fmt: skip
    assert len((await client.get("/v1/cases", headers=headers)).json()["cases"]) == 1
    thank_promoters = {
        "rules": [{"name": "thank promoters", "match": {"categories": ["promoter"]},
                   "then": {"priority": "normal"}}],
        "defaults": {"team_id": "support"},
    }  # fmt: skip
    await put_setup(client, headers, rules=thank_promoters)
    since = (NOW - timedelta(days=1)).isoformat()

    dry = await client.post("/v1/setup/rules/run", json={"since": since}, headers=headers)
    assert dry.status_code == 200, dry.text
    assert len((await client.get("/v1/cases", headers=headers)).json()["cases"]) == 1
    run = await client.post(
        "/v1/setup/rules/run",
        json={"since": since, "dry_run": False, "rule": "thank promoters"},
        headers=headers,
    )
    again = await client.post(
        "/v1/setup/rules/run", json={"since": since, "dry_run": False}, headers=headers
    )

    report = dry.json()
    assert (report["dry_run"], report["would_open"], report["opened"]) == (True, 2, 0)
    assert (report["examined"], report["already_have_case"]) == (3, 1)
    assert sorted(s["response_id"] for s in report["sample"]) == ["r-p1", "r-p2"]
    assert {s["rule"] for s in report["sample"]} == {"thank promoters"}
    assert (run.json()["would_open"], run.json()["opened"]) == (2, 2)
    assert (again.json()["opened"], again.json()["already_have_case"]) == (0, 3)
    listed = (await client.get("/v1/cases", headers=headers)).json()["cases"]
    by_response = {c["response_id"]: c for c in listed}
    assert sorted(by_response) == ["r-d1", "r-p1", "r-p2"]  # r-old answered before `since`
    assert (by_response["r-p1"]["rule"], by_response["r-p1"]["priority"]) == (
        "thank promoters",
        "normal",
    )
