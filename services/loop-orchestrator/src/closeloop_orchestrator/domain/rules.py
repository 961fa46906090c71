"""Case rules. Pure: which case id, which playbook, which owner, which first-contact deadline.

- Case id: derived from (tenant, response id), so processing a response again, whenever and
  wherever (a replay after the inbox was cleared, a rebuilt schema), reaches the same case, and
  downstream uniqueness keyed by case (the notifier's one message per case and template) holds.
  It is `uuid5(CASE_ID_NAMESPACE, "<tenant id>:<response id>")`; a tenant id never contains `:`,
  so distinct pairs give distinct names. Ids are stored and sent: namespace and name never change.

- Playbook by category: detractor -> apology and callback, passive -> ask for one or two
  improvements, promoter -> thanks and a review/referral invitation.
- Owner: a stable choice from the configured team by account (or by customer when there is no
  account), so one account keeps one owner and B2B relationships stay with one person.
- First-contact SLA: 48 h by default; key accounts get their own (shorter) SLA and high priority.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from closeloop_common.events import Category, Owner, Playbook, ResponseReceivedV1

# uuid5(NAMESPACE_URL, "urn:closeloop:case-id"), written out: it must never change.
CASE_ID_NAMESPACE = uuid.UUID("d5279309-5e49-5d08-859c-ec59de98b00f")

PLAYBOOKS: dict[Category, Playbook] = {
    Category.DETRACTOR: Playbook.APOLOGY_CALLBACK,
    Category.PASSIVE: Playbook.IMPROVEMENT_ASK,
    Category.PROMOTER: Playbook.THANKS_REFERRAL,
}


@dataclass(frozen=True, slots=True)
class CasePolicy:
    team: tuple[Owner, ...]
    first_contact_sla: timedelta = timedelta(hours=48)
    key_account_sla: timedelta = timedelta(hours=24)
    key_accounts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.team:
            raise ValueError("a case policy needs at least one owner in the team")


@dataclass(frozen=True, slots=True)
class CasePlan:
    case_id: uuid.UUID
    playbook: Playbook
    owner: Owner
    key_account: bool
    first_contact_due_at: datetime


def case_id_for(*, tenant_id: str, response_id: str) -> uuid.UUID:
    """The id of the follow-up case of a response: the same for the same tenant and response."""
    return uuid.uuid5(CASE_ID_NAMESPACE, f"{tenant_id}:{response_id}")


def assign_owner(team: tuple[Owner, ...], *, tenant_id: str, assignment_key: str) -> Owner:
    """The same key always gets the same owner while the team is unchanged."""
    digest = hashlib.sha256(f"{tenant_id}\x00{assignment_key}".encode()).digest()
    return team[int.from_bytes(digest[:8], "big") % len(team)]


def plan_case(
    response: ResponseReceivedV1, *, tenant_id: str, policy: CasePolicy, opened_at: datetime
) -> CasePlan:
    key_account = response.account_id is not None and response.account_id in policy.key_accounts
    sla = policy.key_account_sla if key_account else policy.first_contact_sla
    assignment_key = (
        f"account:{response.account_id}"
        if response.account_id
        else f"customer:{response.customer.id}"
    )
    return CasePlan(
        case_id=case_id_for(tenant_id=tenant_id, response_id=response.response_id),
        playbook=PLAYBOOKS[response.category],
        owner=assign_owner(policy.team, tenant_id=tenant_id, assignment_key=assignment_key),
        key_account=key_account,
        first_contact_due_at=opened_at + sla,
    )
