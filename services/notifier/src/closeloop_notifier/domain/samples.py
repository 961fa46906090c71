"""Sample contexts: what the preview renders and what a saved template is validated against.

`sample_context(kind, locale)` is a realistic message of the kind (a Polish customer, her
comment, the owner, the deadlines); `sparse=True` is the same message with every optional value
absent (no name, no comment, no owner, no links, no unsubscribe link, a rejected change with no
reason), so a template that only works when everything is there is refused when saved.
`no_response=True` makes the case of a team message (new case, SLA alerts) a lack-of-response
case (`domain.no_response`; it has team messages only) and the digest's first case one.
`validation_contexts` lists every context a template must render with: for team kinds, the
lack-of-response ones too.

The context of a kind (built by the lead's prepare code for real messages, here for samples):

- every kind: `locale`, `now` (aware, UTC), `tenant` {company_name, review_url, referral_url,
  time_zone}, `greeting` (see `rendering.salutation`);
- every kind but the digest: `customer` {id, name, first_name, email} and, but for
  change_summary, `case` {id, score, comment, category, owner {id, name, email} or None,
  channel, first_contact_due_at, resolution_due_at, priority, key_account, note, outcome,
  account_id} (a lack-of-response case: category "no_response", score and comment None, and
  survey_id, invited_at, silent_days, invitation_id, each possibly None);
- customer kinds: `unsubscribe_url`; change_summary: `change` {title, status ("done",
  "rejected"), summary, reason, you_said}; sla_*: `alert` {clock, kind, step, to, deadline,
  due_at, priority, recipient_name}; overdue_digest: `digest` {owner_name, day, count, cases
  [{id, customer_name, priority, deadline, overdue_hours, clock, category}]}.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from closeloop_notifier.domain.kinds import TEAM_KINDS, Kind, audience_of
from closeloop_notifier.domain.no_response import NO_RESPONSE, Unanswered
from closeloop_notifier.domain.rendering import greeting_for

NOW = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
CASE_ID = uuid.UUID("6f1c2a3e-8d4b-4f7a-9c1e-2b5d7e9f0a14")
_SCORES = {
    Kind.THANKS: 10,
    Kind.IMPROVEMENT_ASK: 7,
    Kind.APOLOGY: 3,
    Kind.CASE_RESOLVED: 3,
}
_CATEGORIES = {10: "promoter", 7: "passive", 3: "detractor"}

_TEXT: dict[str, dict[str, str]] = {
    "pl": {
        "company": "Zielony Ogród",
        "survey": "relacje-2026",
        "comment": "Zamówione nasiona przyszły po tygodniu,\na połowa paczek była uszkodzona.",
        "praise": "Świetna obsługa, doradca pomógł mi dobrać rośliny do ogrodu.",
        "mixed": "Dobre ceny, ale dostawa mogłaby być szybsza.",
        "suggestion": "Dostawa trwa za długo, czekałam tydzień na nasiona.",
        "note": "Wysłaliśmy nową partię nasion ekspresowo i zwróciliśmy koszt dostawy. "
        "Od stycznia każda paczka jest sprawdzana przed wysyłką.",
        "title": "Szybsza dostawa zamówień",
        "summary": "Zamówienia złożone do 14:00 wysyłamy jeszcze tego samego dnia, "
        "a paczki z nasionami pakujemy w sztywne koperty.",
        "reason": "Kurier, z którym współpracujemy, nie dowozi przesyłek w soboty, "
        "a zmiana przewoźnika podniosłaby ceny dostawy dla wszystkich klientów.",
    },
    "en": {
        "company": "Green Garden",
        "survey": "relationship-2026",
        "comment": "The seeds I ordered took a week to arrive,\nand half of the packets were damaged.",
        "praise": "Great service, the adviser helped me choose plants for my garden.",
        "mixed": "Good prices, but delivery could be faster.",
        "suggestion": "Delivery takes too long, I waited a week for my seeds.",
        "note": "We sent a new batch of seeds by express delivery and refunded the shipping "
        "cost. From January every parcel is checked before it leaves.",
        "title": "Faster delivery",
        "summary": "Orders placed by 2 pm now leave the same day, and seed packets are "
        "packed in stiff envelopes.",
        "reason": "Our courier does not deliver on Saturdays, and changing couriers would "
        "raise delivery prices for every customer.",
    },
}


def _case(kind: Kind, text: dict[str, str], sparse: bool) -> dict[str, Any]:
    score = _SCORES.get(kind, 2)
    comment = {Kind.THANKS: text["praise"], Kind.IMPROVEMENT_ASK: text["mixed"]}.get(
        kind, text["comment"]
    )
    owner = {"id": "ewa", "name": "Ewa Zielińska", "email": "ewa.zielinska@zielonyogrod.example"}
    return {
        "id": CASE_ID,
        "score": score,
        "comment": None if sparse else comment,
        "category": _CATEGORIES.get(score, "detractor"),
        "owner": None if sparse else owner,
        "channel": "email" if sparse else "phone",
        "first_contact_due_at": NOW + timedelta(days=1, hours=3, minutes=30),
        "resolution_due_at": None if sparse else NOW + timedelta(days=6, hours=6, minutes=30),
        "priority": "urgent" if sparse else "high",
        "key_account": sparse,
        "note": None if sparse else text["note"],
        "outcome": None if sparse else "solved",
        "account_id": None if sparse else "hurtownia-wojcik",
    }


def _no_response_case(kind: Kind, text: dict[str, str], sparse: bool) -> dict[str, Any]:
    """A lack-of-response case; `sparse`: what was not answered is not known (as in an SLA alert
    of an invitation the notifier never saw)."""
    unanswered = (
        Unanswered()
        if sparse
        else Unanswered(
            invitation_id="inv-20261120-1042",
            survey_id=text["survey"],
            invited_at=NOW - timedelta(days=15, hours=2),
            silent_days=14,
        )
    )
    return _case(kind, text, sparse) | {
        "score": None,
        "comment": None,
        "category": NO_RESPONSE,
        "key_account": True,
        "resolution_due_at": None,
        "note": None,
        "outcome": None,
        "account_id": "hurtownia-wojcik",
        **unanswered.context(),
    }


def _alert(kind: Kind, sparse: bool) -> dict[str, Any]:
    late = {
        Kind.SLA_WARNING: timedelta(hours=-3, minutes=-30),
        Kind.SLA_BREACH: timedelta(hours=3),
        Kind.SLA_ESCALATION: timedelta(days=1, hours=2),
    }[kind]
    escalation = kind is Kind.SLA_ESCALATION
    deadline = NOW - late
    return {
        "clock": "resolution" if sparse else "first_contact",
        "kind": kind.value.removeprefix("sla_"),
        "step": (2 if sparse else 1) if escalation else 0,
        "to": ("manager" if sparse else "team_lead") if escalation else "owner",
        "deadline": deadline,
        "due_at": NOW,
        "priority": "urgent" if sparse else "high",
        "recipient_name": None if sparse else ("Marek Nowak" if escalation else "Ewa Zielińska"),
    }


def _digest(sparse: bool, no_response: bool) -> dict[str, Any]:
    rows: list[tuple[str | None, str, float, str]] = [
        ("Zofia Wójcik", "high", 26.5, "first_contact"),
        ("Jan Kowalski", "normal", 5.0, "resolution"),
        ("Hurtownia Nowak", "urgent", 0.75, "first_contact"),
    ]
    if sparse:
        rows = [(None, "low", 49.0, "resolution")]
    cases = [
        {
            "id": uuid.UUID(int=CASE_ID.int + i),
            "customer_name": name,
            "priority": priority,
            "deadline": NOW - timedelta(hours=hours),
            "overdue_hours": hours,
            "clock": clock,
            "category": NO_RESPONSE if no_response and i == 0 else "detractor",
        }
        for i, (name, priority, hours, clock) in enumerate(rows)
    ]
    return {
        "owner_name": "Ewa Zielińska",
        "day": date(2026, 12, 5),
        "count": len(cases),
        "cases": cases,
    }


def sample_context(
    kind: Kind, locale: str, *, sparse: bool = False, no_response: bool = False
) -> dict[str, Any]:
    """A realistic context of `kind` in `locale` (see the module docstring); `sparse`: every
    optional value absent; `no_response`: a lack-of-response case (team kinds)."""
    text = _TEXT.get(locale, _TEXT["en"])
    context: dict[str, Any] = {
        "locale": locale,
        "now": NOW,
        "tenant": {
            "company_name": text["company"],
            "review_url": None if sparse else "https://opinie.example/zielony-ogrod",
            "referral_url": None if sparse else "https://zielonyogrod.example/polec",
            "time_zone": "Europe/Warsaw",
        },
    }
    customer_name = None if sparse else "Zofia Wójcik"
    if kind is not Kind.OVERDUE_DIGEST:
        context["customer"] = {
            "id": "cust-1042",
            "name": customer_name,
            "first_name": None if sparse else "Zofia",
            "email": None if sparse else "zofia.wojcik@example.pl",
        }
    if kind is not Kind.OVERDUE_DIGEST and kind is not Kind.CHANGE_SUMMARY:
        context["case"] = (
            _no_response_case(kind, text, sparse)
            if no_response and kind in TEAM_KINDS
            else _case(kind, text, sparse)
        )
    if audience_of(kind) == "customer":
        context["unsubscribe_url"] = None if sparse else "https://powiadomienia.example/u/k7Qx2"
    if kind is Kind.CHANGE_SUMMARY:
        context["change"] = {
            "title": text["title"],
            "status": "rejected" if sparse else "done",
            "summary": None if sparse else text["summary"],
            "reason": None,
            "you_said": None if sparse else text["suggestion"],
        }
    if kind in (Kind.SLA_WARNING, Kind.SLA_BREACH, Kind.SLA_ESCALATION):
        alert = context["alert"] = _alert(kind, sparse)
        context["case"][f"{alert['clock']}_due_at"] = alert["deadline"]
    if kind is Kind.OVERDUE_DIGEST:
        context["digest"] = _digest(sparse, no_response)
    context["greeting"] = greeting_for(kind, locale, context)
    return context


def validation_contexts(kind: Kind, locale: str) -> list[dict[str, Any]]:
    """Every context a template of `kind` must render with before it is saved."""
    contexts = [sample_context(kind, locale), sample_context(kind, locale, sparse=True)]
    if kind is Kind.CHANGE_SUMMARY:
        rejected = sample_context(kind, locale)
        rejected["change"] = {
            **rejected["change"],
            "status": "rejected",
            "summary": None,
            "reason": _TEXT.get(locale, _TEXT["en"])["reason"],
        }
        contexts.append(rejected)
    if kind in TEAM_KINDS:
        contexts += [
            sample_context(kind, locale, no_response=True),
            sample_context(kind, locale, sparse=True, no_response=True),
        ]
    return contexts
