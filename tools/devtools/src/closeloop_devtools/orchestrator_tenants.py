"""The tenants of `make bench-orchestrator`: their organisations, case rules and account owners.

Four tenants, each with the accounts of `scoring_responses.ResponseFeed` dealt to it in turn:
- a customer-care team of eight (the first is the lead; Polish and English speakers) and a
  key-account team of three, a manager outside both, a shared mailbox each;
- its five biggest accounts are key accounts; its 50 biggest have an account owner (as a CRM
  syncs them with `PUT /v1/account-owners`);
- rules that every response passes with a case (the benchmark counts one case per response):
  key accounts go to the key-account team (account owner, else least loaded) within 4 h; very
  angry detractors (0-3) are urgent within 8 h, in the customer's language; the rest takes the
  defaults (account owner, else round robin; 48 h, a detractor's resolution in 168 h);
- `sklep-pl` counts its passives' and promoters' deadlines in Warsaw business hours with Polish
  holidays; `fin-cz` escalates to the team lead 1 h after a breach and to the manager after 8 h.
The set-up is handed to the orchestrator as its set-up file (`ORCHESTRATOR_SETUP_FILE`).
"""

from __future__ import annotations

from typing import Any

TENANTS = ("sklep-pl", "nordwind-logistics", "fin-cz", "cloud-uk")
KEY_ACCOUNTS_PER_TENANT = 5
OWNED_ACCOUNTS_PER_TENANT = 50
CARE_PEOPLE = (
    ("anna", "Anna Nowak", ("pl", "en")),
    ("piotr", "Piotr Wójcik", ("pl",)),
    ("emma", "Emma Clarke", ("en",)),
    ("katarzyna", "Katarzyna Mazur", ("pl", "en")),
    ("james", "James Brown", ("en", "de")),
    ("ewa", "Ewa Zając", ("pl",)),
    ("lukas", "Lukas Schmidt", ("de", "en")),
    ("magdalena", "Magdalena Król", ("pl", "en")),
)
KEY_ACCOUNT_PEOPLE = (
    ("tomasz", "Tomasz Kowalczyk", ("pl", "en")),
    ("sophie", "Sophie Martin", ("en", "fr")),
    ("jan", "Jan Novák", ("cs", "en")),
)


def accounts_of(tenant: str, accounts: int) -> list[str]:
    """The tenant's account ids, biggest first (the feed deals account k to tenant k mod 4)."""
    index = TENANTS.index(tenant)
    return [f"acc-{k + 1:05d}" for k in range(index, accounts, len(TENANTS))]


def _member(tenant: str, person: tuple[str, str, tuple[str, ...]], *, lead: bool) -> dict[str, Any]:
    member_id, name, languages = person
    return {
        "id": member_id,
        "name": name,
        "email": f"{member_id}@{tenant}.example.com",
        "languages": list(languages),
        "lead": lead,
    }


def organisation(tenant: str, accounts: int) -> dict[str, Any]:
    """The tenant's teams, people, calendar, SLA escalation and key accounts (admin API shape)."""
    body: dict[str, Any] = {
        "teams": [
            {
                "id": "care",
                "name": "Customer care",
                "email": f"care@{tenant}.example.com",
                "members": [_member(tenant, p, lead=i == 0) for i, p in enumerate(CARE_PEOPLE)],
                "lead_id": CARE_PEOPLE[0][0],
                "manager_id": "director",
                "queue": "care",
            },
            {
                "id": "key-accounts",
                "name": "Key accounts",
                "email": f"key-accounts@{tenant}.example.com",
                "members": [
                    _member(tenant, p, lead=i == 0) for i, p in enumerate(KEY_ACCOUNT_PEOPLE)
                ],
                "lead_id": KEY_ACCOUNT_PEOPLE[0][0],
                "manager_id": "director",
                "queue": "key-accounts",
            },
        ],
        "default_team": "care",
        "people": [_member(tenant, ("director", "Maria Director", ("en",)), lead=False)],
        "key_accounts": accounts_of(tenant, accounts)[:KEY_ACCOUNTS_PER_TENANT],
    }
    if tenant == "sklep-pl":
        working = ["08:00-16:00"]
        body["calendar"] = {
            "time_zone": "Europe/Warsaw",
            "hours": {day: working for day in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": "PL",
        }
    if tenant == "fin-cz":
        body["sla"] = {
            "escalation": [
                {"to": "team_lead", "after_hours": 1},
                {"to": "manager", "after_hours": 8},
            ]
        }
    return body


def rules(tenant: str) -> dict[str, Any]:
    """The tenant's case rules (admin API shape); every response opens a case."""
    found: list[dict[str, Any]] = [
        {
            "name": "key accounts",
            "match": {"key_account": True},
            "then": {
                "team_id": "key-accounts",
                "assignment": ["account_owner", "least_loaded"],
                "first_contact_hours": 4,
            },
        },
        {
            "name": "very angry detractors",
            "match": {"categories": ["detractor"], "score_max": 3},
            "then": {
                "priority": "urgent",
                "first_contact_hours": 8,
                "assignment": ["account_owner", "language_match", "least_loaded"],
            },
        },
    ]
    if tenant == "sklep-pl":
        found.append(
            {
                "name": "passives and promoters in business hours",
                "match": {"categories": ["passive", "promoter"]},
                "then": {"business_hours": True},
            }
        )
    return {"rules": found}


def setup_file(accounts: int) -> dict[str, Any]:
    """The body of `ORCHESTRATOR_SETUP_FILE` for every tenant."""
    return {
        "tenants": {
            tenant: {"organisation": organisation(tenant, accounts), "rules": rules(tenant)}
            for tenant in TENANTS
        }
    }


def account_owner_rows(accounts: int) -> list[dict[str, str]]:
    """Owners of each tenant's biggest accounts: key accounts to the key-account team, the rest
    to customer care, in turn."""
    rows = []
    for tenant in TENANTS:
        owned = accounts_of(tenant, accounts)[:OWNED_ACCOUNTS_PER_TENANT]
        for n, account in enumerate(owned):
            people = KEY_ACCOUNT_PEOPLE if n < KEY_ACCOUNTS_PER_TENANT else CARE_PEOPLE
            rows.append(
                {"tenant_id": tenant, "account_id": account, "owner_id": people[n % len(people)][0]}
            )
    return rows
