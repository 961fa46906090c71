"""The outer loop in `make run`, and the team's work: key accounts whose key contacts stay silent,
agents working cases (some breach a short demo SLA and escalate), a structural issue made from the
comments' top theme and closed with a "you said, we did" campaign, and where to read the review
pack and the loop's impact.

- `watch_silence` makes two demo accounts key accounts and shortens the silence window to a
  minute (the admin API), so a lack-of-response case opens while the demo runs;
  `silent_invitation` is an invitation to a key contact that nobody answers.
- `close_top_theme` runs a structural issue through its lifecycle: created from the top comment
  theme (scoring's drivers and what-if), prioritised, started and done, with Polish and English
  texts; the notifier turns its change summary into a campaign to everyone who raised the theme.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import httpx

KEY_ACCOUNTS = ("hurtownia-nowak", "northwind-uk")
SILENCE_DAYS = 1 / 1440  # a minute, for the demo (production: 14 days)


def watch_silence(orchestrator: str, admin: dict[str, str]) -> None:
    """The demo tenant's set-up, in demo time: key accounts with a one-minute silence window, and
    a 90-second first contact for the German detractors with escalations a minute or two after
    a breach (production: hours), so the SLA panels and alerts have something to show."""
    with httpx.Client(base_url=orchestrator, headers=admin, timeout=10) as client:
        for part, change in (
            (
                "organisation",
                {
                    "key_accounts": list(KEY_ACCOUNTS),
                    "silence": {"after_days": SILENCE_DAYS, "first_contact_hours": 24},
                    "sla": {
                        "warn_at": 0.5,
                        "escalation": [
                            {"to": "team_lead", "after_hours": 1 / 60},
                            {"to": "manager", "after_hours": 2 / 60},
                        ],
                    },
                },
            ),
            ("rules", {"rules": [FAST_CALLBACK]}),
        ):
            current = client.get(f"/v1/setup/{part}")
            current.raise_for_status()
            client.put(
                f"/v1/setup/{part}",
                json=current.json()[part] | change,
                headers={"If-Match": current.headers["ETag"]},
            ).raise_for_status()


FAST_CALLBACK = {
    "name": "demo: German detractors called back within 90 seconds",
    "match": {"categories": ["detractor"], "segments": {"region": ["DE"]}},
    "then": {"first_contact_hours": 0.025, "priority": "urgent"},
}
AGENTS = ("agnieszka", "tomasz", "emma")  # the demo team (ORCHESTRATOR_TEAM's default)
ROOT_CAUSES = ("invoice layout", "late courier", "app crash", "slow support line")


def work_cases(orchestrator: str, headers: dict[str, str], rng: random.Random, *, most: int) -> int:
    """The team at work: up to `most` open cases taken, the customer reached, a root cause named,
    resolved and closed (a re-survey in 30 days); the others wait (and some breach their SLA).
    How many were closed."""
    closed = 0
    with httpx.Client(base_url=orchestrator, headers=headers, timeout=10) as client:
        listed = client.get("/v1/cases", params={"status": "open", "limit": 100})
        listed.raise_for_status()
        waiting = [c for c in listed.json()["cases"] if c["case_type"] != "no_response"]
        for case in rng.sample(waiting, min(most, len(waiting))):
            url = f"/v1/cases/{case['case_id']}"
            etag = f'"{case["version"]}"'
            for command, body in (
                ("claim", {"owner_id": rng.choice(AGENTS)}),
                ("contacts", {"channel": "phone", "outcome": "reached", "note": "Rozmowa."}),
                ("root-causes", {"tags": [rng.choice(ROOT_CAUSES)]}),
                ("resolve", {"outcome": "solved", "note": "Sprawa wyjaśniona."}),
                ("close", {"note": "Zamknięte.", "resurvey_after_days": 30}),
            ):
                moved = client.post(f"{url}/{command}", json=body, headers={"If-Match": etag})
                if moved.status_code != 200:  # changed meanwhile: leave it to the next round
                    break
                etag = moved.headers["ETag"]
            else:
                closed += 1
    return closed


def bad_webhook(path: str, body: bytes) -> dict[str, Any]:
    """A delivery whose signature does not match (a survey tool with an old secret): refused,
    and counted by source and reason."""
    return {
        "url": path,
        "content": body,
        "headers": {"content-type": "application/json", "Typeform-Signature": "sha256=AAAA"},
    }


def silent_invitation(n: int, run_id: str) -> dict[str, Any]:
    """An invitation to a key contact of a key account that nobody will answer."""
    account = KEY_ACCOUNTS[n % len(KEY_ACCOUNTS)]
    customer = f"key-{account}-{run_id}-{n}"
    return {
        "invitation_id": f"inv-silent-{run_id}-{n}",
        "survey_id": "relationship-2026",
        "customer": {
            "id": customer,
            "email": f"{customer}@customers.example.com",
            "name": "Zofia Wiśniewska" if account == "hurtownia-nowak" else "Oliver Smith",
            "locale": "pl-PL" if account == "hurtownia-nowak" else "en-GB",
        },
        "account_id": account,
        "channel": "email",
        "invited_at": datetime.now(UTC).isoformat(),
        "attributes": {"key_contact": "true"},
    }


def close_top_theme(stack_urls: dict[str, str], headers: dict[str, str]) -> str | None:
    """Make an issue of the comments' top theme and take it to done; a line saying what happened
    (None when there is no theme yet)."""
    with httpx.Client(headers=headers, timeout=20) as client:
        drivers = client.get(f"{stack_urls['scoring']}/v1/drivers", params={"source": "comment"})
        drivers.raise_for_status()
        found = drivers.json()["drivers"]
        if not found:
            return None
        theme = found[0]["theme"]
        base = f"{stack_urls['orchestrator']}/v1/issues"
        made = client.post(
            base,
            json={
                "title": f"Customers complain about {theme}",
                "source": "theme",
                "theme": theme,
                "cost": 8,
                "cost_unit": "person-days",
                "owner": {"id": "ewa", "name": "Ewa Zielińska"},
            },
        )
        made.raise_for_status()
        issue = made.json()
        url, etag = f"{base}/{issue['issue_id']}", made.headers["ETag"]
        for step, body in (
            ("prioritise", None),
            ("start", None),
            (
                "done",
                {
                    "locale": "pl",
                    "texts": {
                        "pl": {
                            "title": "Zmiana po Państwa uwagach",
                            "you_said": theme,
                            "summary": "Zmieniliśmy sposób pracy zespołu, który się tym zajmuje.",
                        },
                        "en": {
                            "title": "A change you asked for",
                            "you_said": theme,
                            "summary": "The team that handles it now works differently.",
                        },
                    },
                },
            ),
        ):
            moved = client.post(f"{url}/{step}", json=body, headers={"If-Match": etag})
            moved.raise_for_status()
            etag = moved.headers["ETag"]
        impact = issue["impact"]
        gain = "unknown" if impact is None else f"{impact['nps_points']:+.1f} NPS points"
        return (
            f"structural issue {issue['issue_id']} ({theme!r}, impact {gain}, "
            f"{issue['theme_responses']} respondents): done; their campaign is on its way"
        )


def outer_loop_lines(stack_urls: dict[str, str], headers: dict[str, str]) -> list[str]:
    """What the status print shows of the outer loop."""
    orchestrator = stack_urls["orchestrator"]
    with httpx.Client(base_url=orchestrator, headers=headers, timeout=10) as client:
        silent = client.get("/v1/cases", params={"case_type": "no_response", "limit": 500})
        silent.raise_for_status()
        impact = client.get("/v1/loop/impact")
        impact.raise_for_status()
    loop = impact.json()["loop"]
    within = impact.json()["first_contact"]["within_sla"]
    share = within["share"]
    return [
        f"  lack-of-response cases: {len(silent.json()['cases'])} "
        f"(key contacts of {', '.join(KEY_ACCOUNTS)} who stayed silent)",
        f"  loop: closed {loop['closed']['cases']}, not closed {loop['not_closed']['cases']}; "
        "first contact within SLA "
        + ("n/a" if share is None else f"{share:.0%}")
        + f"   ({orchestrator}/v1/loop/impact)",
        f"  review pack: {orchestrator}/v1/accounts/{KEY_ACCOUNTS[0]}/review.html?lang=pl",
    ]
