"""Erasure (GDPR article 17) and export (article 15) through the whole stack: two customers answer,
their cases and apologies go out, one is erased by address; then every row of the four schemas
is searched for her address, name, comment and customer id, the other customer is untouched, the
aggregates keep their counts, every service reported its part, and no service's log names her."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from closeloop_common.services import SERVICES
from closeloop_common.settings import CommonSettings
from closeloop_devtools.mailsink import read_mailbox
from closeloop_devtools.stack import Stack
from tests.e2e.conftest import eventually


def a_response(customer_id: str, email: str, name: str, comment: str) -> dict[str, Any]:
    return {
        "response_id": f"r-{uuid.uuid4().hex[:12]}",
        "survey_id": "relationship-2026",
        "customer": {"id": customer_id, "email": email, "name": name, "locale": "pl-PL"},
        "score": 2,
        "comment": comment,
        "answered_at": datetime.now(UTC).isoformat(),
        "segments": {"region": "PL"},
    }


async def _rows_naming(database_url: str, needles: list[str]) -> dict[str, int]:
    """`schema.table` -> rows whose any column (a bytea column decoded) holds any needle."""
    engine = create_async_engine(database_url)
    found: dict[str, int] = {}
    try:
        async with engine.connect() as connection:
            columns = await connection.execute(
                sa.text(
                    "SELECT table_schema, table_name, column_name, data_type "
                    "FROM information_schema.columns WHERE table_schema = ANY(:schemas) "
                    "AND table_name <> 'alembic_version'"
                ),
                {"schemas": [s.schema for s in SERVICES]},
            )
            tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for schema, table, column, data_type in columns:
                tables.setdefault((schema, table), []).append((column, data_type))
            for (schema, table), cols in sorted(tables.items()):
                as_text = " || ' ' || ".join(
                    f"coalesce(convert_from(\"{c}\", 'UTF8'), '')"
                    if kind == "bytea"
                    else f"coalesce(CAST(\"{c}\" AS text), '')"
                    for c, kind in cols
                )
                count = await connection.scalar(
                    sa.text(
                        f'SELECT count(*) FROM "{schema}"."{table}" '
                        f"WHERE EXISTS (SELECT 1 FROM unnest(CAST(:needles AS text[])) AS n(x) "
                        f"WHERE position(n.x IN lower({as_text})) > 0)"
                    ),
                    {"needles": [n.lower() for n in needles]},
                )
                if count:
                    found[f"{schema}.{table}"] = int(count)
    finally:
        await engine.dispose()
    return found


def test_erasing_a_respondent_by_address_reaches_every_schema_and_keeps_the_counts(
    stack: Stack, maildir: Path, bearer: Callable[..., dict[str, str]]
) -> None:
    run = uuid.uuid4().hex[:8]
    tenant = f"e2e-privacy-{run}"
    anna_email, anna_name, anna_id = (
        f"anna.{run}@klient.example.pl",
        f"Anna Zawisza{run}",
        f"c-anna-{run}",
    )
    anna_comment = f"Kurier był niemiły, Zawisza{run} czekała tydzień."
    jan_email, jan_name = f"jan.{run}@klient.example.pl", f"Jan Nowicki{run}"
    anna = a_response(anna_id, anna_email, anna_name, anna_comment)
    jan = a_response(f"c-jan-{run}", jan_email, jan_name, "Faktura była błędna.")
    anna_says = [anna_email, anna_name, anna_id, anna_comment, f"Zawisza{run}"]
    user = bearer(tenant, "responses:write", "read", "cases:write")
    admin = bearer(tenant, "admin")

    with httpx.Client(headers=user, timeout=10) as client:
        for body in (anna, jan):
            posted = client.post(f"{stack.url('ingest')}/v1/responses", json=body)
            assert posted.status_code == 202, posted.text

        def sent_to(address: str) -> list[Any] | None:
            mails = [m for m in read_mailbox(maildir) if m["To"] == address]
            return mails or None

        eventually(lambda: sent_to(anna_email), what="Anna's apology")
        eventually(lambda: sent_to(jan_email), what="Jan's apology")

        def nps() -> dict[str, Any] | None:
            body = client.get(f"{stack.url('scoring')}/v1/nps").json()
            return body if body["responses"] == 2 else None

        def messages() -> list[Any]:
            answer = client.get(f"{stack.url('notifier')}/v1/messages")
            return list(answer.json()["messages"])

        def all_sent() -> list[Any] | None:
            found = messages()
            return found if found and all(m["status"] == "sent" for m in found) else None

        nps_before = eventually(nps, what="both responses counted")
        cases_before = client.get(f"{stack.url('orchestrator')}/v1/cases").json()["cases"]
        messages_before = eventually(all_sent, what="every message sent")
        assert len(cases_before) == 2
        database_url = CommonSettings().database_url
        held_before = asyncio.run(_rows_naming(database_url, anna_says))
        assert {
            "ingest.responses",
            "orchestrator.cases",
            "orchestrator.responses",
            "notifier.messages",
            "notifier.contacts",
        } <= set(held_before), held_before

        asked = client.post(
            f"{stack.url('ingest')}/v1/privacy/erasures", json={"email": anna_email}, headers=admin
        )
        assert asked.status_code == 202, asked.text
        erasure_id = asked.json()["erasure_id"]

        def completed() -> dict[str, Any] | None:
            status = client.get(
                f"{stack.url('ingest')}/v1/privacy/erasures/{erasure_id}", headers=admin
            ).json()
            return status if status["status"] == "completed" else None

        status = eventually(completed, what="every service's part of the erasure")
        assert sorted(status["services"]) == ["ingest", "notifier", "orchestrator", "scoring"]
        assert status["services"]["ingest"]["rows"]["responses"] == 1
        assert status["services"]["orchestrator"]["rows"]["cases"] == 1
        assert status["services"]["notifier"]["rows"]["contacts"] == 1
        assert status["services"]["notifier"]["rows"]["messages"] >= 1

        # Aggregates and counts are what they were.
        nps_after = client.get(f"{stack.url('scoring')}/v1/nps").json()
        assert (nps_after["responses"], nps_after["detractors"], nps_after["nps"]) == (
            nps_before["responses"],
            nps_before["detractors"],
            nps_before["nps"],
        )
        cases_after = client.get(f"{stack.url('orchestrator')}/v1/cases").json()["cases"]
        assert sorted(c["status"] for c in cases_after) == sorted(c["status"] for c in cases_before)
        assert len(messages()) == len(messages_before)

        # Anna is gone from every row of every schema; Jan is where he was.
        assert asyncio.run(_rows_naming(database_url, anna_says)) == {}
        jan_rows = asyncio.run(_rows_naming(database_url, [jan_email]))
        assert {"ingest.responses", "orchestrator.cases", "notifier.messages"} <= set(jan_rows)

        # Jan's export: all four services answer, with what each holds about him.
        exported = client.post(
            f"{stack.url('ingest')}/v1/privacy/exports", json={"email": jan_email}, headers=admin
        )
        assert exported.status_code == 200, exported.text
        document = exported.json()
        assert document["unavailable"] == []
        assert sorted(document["services"]) == ["ingest", "notifier", "orchestrator", "scoring"]
        [case] = document["services"]["orchestrator"]["cases"]
        assert case["comment"] == jan["comment"]
        assert [r["response_id"] for r in document["services"]["scoring"]["responses"]] == [
            jan["response_id"]
        ]
        assert jan_email in {m["recipient"] for m in document["services"]["notifier"]["messages"]}
        anna_export = client.post(
            f"{stack.url('ingest')}/v1/privacy/exports", json={"email": anna_email}, headers=admin
        ).json()
        assert anna_export["services"]["ingest"]["responses"] == []
        assert anna_export["services"]["orchestrator"]["cases"] == []

    # No service's log names her (her address, name, customer id or comment).
    for spec in SERVICES:
        log = (stack.log_dir / f"{spec.name}.log").read_text(errors="replace")
        for needle in anna_says:
            assert needle not in log, f"{spec.name}'s log names the erased respondent"
