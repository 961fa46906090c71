"""A case's identity and playbook. Pure.

- Case id: derived from (tenant, response id), so processing a response again, whenever and
  wherever (a replay after the inbox was cleared, a rebuilt schema), reaches the same case, and
  downstream uniqueness keyed by case (the notifier's one message per case and template) holds.
  It is `uuid5(CASE_ID_NAMESPACE, "<tenant id>:<response id>")`; a tenant id never contains `:`,
  so distinct pairs give distinct names. Ids are stored and sent: namespace and name never change.
- Playbook by case type: detractor -> apology and callback, passive -> ask for one or two
  improvements, promoter -> thanks and a review/referral invitation.

Which responses open which case, with what priority, owner and deadlines: `case_rules.py` and
`assignment.py`.
"""

from __future__ import annotations

import uuid

from closeloop_common.events import Category, Playbook

# uuid5(NAMESPACE_URL, "urn:closeloop:case-id"), written out: it must never change.
CASE_ID_NAMESPACE = uuid.UUID("d5279309-5e49-5d08-859c-ec59de98b00f")

PLAYBOOKS: dict[Category, Playbook] = {
    Category.DETRACTOR: Playbook.APOLOGY_CALLBACK,
    Category.PASSIVE: Playbook.IMPROVEMENT_ASK,
    Category.PROMOTER: Playbook.THANKS_REFERRAL,
}


def case_id_for(*, tenant_id: str, response_id: str) -> uuid.UUID:
    """The id of the follow-up case of a response: the same for the same tenant and response."""
    return uuid.uuid5(CASE_ID_NAMESPACE, f"{tenant_id}:{response_id}")
