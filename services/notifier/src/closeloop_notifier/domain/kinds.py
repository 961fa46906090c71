"""What the notifier sends: message kinds, who they are for, and the key that makes each unique.

A message is one of these kinds. Customer kinds go to a respondent (or, for `change_summary`, to
anyone invited in a segment); team kinds go to a case's owner, the next person in its escalation
chain, or the tenant's chat/CRM webhook.

The dedup key is unique per tenant (`messages.dedup_key`): one message per (case, kind), per
(campaign, recipient), per (case, SLA alert) and per (owner, digest day), however often the event
that asks for it is delivered.
"""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Literal

from closeloop_common.events import Playbook


class Kind(StrEnum):
    # to customers
    THANKS = "thanks"  # promoter: thanks, review / referral invitation
    APOLOGY = "apology"  # detractor: apology quoting the comment, owner, when and how
    IMPROVEMENT_ASK = "improvement_ask"  # passive: the one or two things to improve
    CASE_RESOLVED = "case_resolved"  # "what we did", on the case's resolution (optional)
    CHANGE_SUMMARY = "change_summary"  # "you said, we did" (or why not): a campaign
    # to the team
    OWNER_NEW_CASE = "owner_new_case"
    SLA_WARNING = "sla_warning"
    SLA_BREACH = "sla_breach"
    SLA_ESCALATION = "sla_escalation"
    OVERDUE_DIGEST = "overdue_digest"


Audience = Literal["customer", "team"]

CUSTOMER_KINDS = frozenset(
    {Kind.THANKS, Kind.APOLOGY, Kind.IMPROVEMENT_ASK, Kind.CASE_RESOLVED, Kind.CHANGE_SUMMARY}
)
TEAM_KINDS = frozenset(set(Kind) - CUSTOMER_KINDS)

KIND_BY_PLAYBOOK: dict[Playbook, Kind] = {
    Playbook.APOLOGY_CALLBACK: Kind.APOLOGY,
    Playbook.IMPROVEMENT_ASK: Kind.IMPROVEMENT_ASK,
    Playbook.THANKS_REFERRAL: Kind.THANKS,
}


def audience_of(kind: Kind) -> Audience:
    return "customer" if kind in CUSTOMER_KINDS else "team"


def case_key(case_id: uuid.UUID, kind: Kind) -> str:
    """One message per (case, kind): the reply to a response, its resolution, a new-case alert."""
    return f"case:{case_id}:{kind.value}"


def alert_key(case_id: uuid.UUID, clock: str, kind: str, step: int, deadline: str) -> str:
    """One message per SLA alert: a clock's round is told apart by its deadline."""
    return f"alert:{case_id}:{clock}:{kind}:{step}:{deadline}"


def campaign_key(campaign_id: uuid.UUID, recipient_key: str) -> str:
    """One message per (campaign, recipient): `recipient_key` is the opt-out key of the address."""
    return f"campaign:{campaign_id}:{recipient_key}"


def digest_key(owner_id: str, day: date) -> str:
    return f"digest:{owner_id}:{day.isoformat()}"
