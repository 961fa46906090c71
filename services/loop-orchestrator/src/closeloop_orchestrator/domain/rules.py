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

from closeloop_common.events import Category, Playbook
from closeloop_common.identifiers import CASE_ID_NAMESPACE, case_id_for

__all__ = ["CASE_ID_NAMESPACE", "PLAYBOOKS", "case_id_for"]

PLAYBOOKS: dict[Category, Playbook] = {
    Category.DETRACTOR: Playbook.APOLOGY_CALLBACK,
    Category.PASSIVE: Playbook.IMPROVEMENT_ASK,
    Category.PROMOTER: Playbook.THANKS_REFERRAL,
}
