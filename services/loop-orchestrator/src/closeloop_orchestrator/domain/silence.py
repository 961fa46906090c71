"""Silence as a signal (B2B): when an unanswered invitation opens a lack-of-response case. Pure.

A tenant's `SilenceSpec` (part of its organisation set-up) says how long a key contact of a key
account may leave an invitation unanswered (`after_days`) before the account's owner is asked to
reach out, and which contacts are key: those whose invitation carries the attribute
`key_contact_attribute` with one of `key_contact_values` (by default `key_contact` = `true`,
`yes` or `1`, as a CRM marks them), or every contact of a key account when the attribute is null.

`silence_due` decides, when an invitation arrives, whether and when it would open a case; the
watcher (`service_layer/silence.py`) opens it then if the invitation is still unanswered and the
decision still holds under the set-up of that moment (`still_silent`). One active case per silent
contact: a further unanswered invitation of someone whose case is still open joins that case.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from closeloop_common.events import ATTRIBUTE_NAME_PATTERN
from closeloop_orchestrator.domain.case_commands import ContactChannel, Priority

CASE_TYPE = "no_response"
PLAYBOOK = "account_outreach"
RESPONSE_PREFIX = "no-response:"


class SilenceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="open lack-of-response cases at all")
    after_days: float = Field(
        14, gt=0, le=365, description="how long a key contact may leave an invitation unanswered"
    )
    key_contact_attribute: (
        Annotated[str, StringConstraints(pattern=ATTRIBUTE_NAME_PATTERN)] | None
    ) = Field(
        "key_contact",
        description="the invitation attribute marking a key contact; null: every contact of a "
        "key account is key",
    )
    key_contact_values: frozenset[
        Annotated[str, StringConstraints(min_length=1, max_length=100)]
    ] = Field(frozenset({"true", "yes", "1"}), min_length=1, max_length=20)
    first_contact_hours: float = Field(
        48, gt=0, le=24 * 30, description="the owner's first-contact deadline, in wall-clock hours"
    )
    priority: Priority = Priority.HIGH
    channel: ContactChannel = ContactChannel.PHONE
    team_id: str | None = Field(
        None, description="whose queue holds the case when the account has no owner (default team)"
    )

    def window(self) -> timedelta:
        return timedelta(days=self.after_days)


def is_key_contact(spec: SilenceSpec, attributes: Mapping[str, str]) -> bool:
    if spec.key_contact_attribute is None:
        return True
    value = attributes.get(spec.key_contact_attribute)
    return value is not None and value.strip().lower() in spec.key_contact_values


def silence_due(
    spec: SilenceSpec,
    *,
    key_accounts: Collection[str],
    account_id: str | None,
    attributes: Mapping[str, str],
    invited_at: datetime,
) -> datetime | None:
    """When an unanswered invitation opens a lack-of-response case; None when it never does
    (silence off, no account, not a key account, not a key contact)."""
    if not spec.enabled or account_id is None or account_id not in key_accounts:
        return None
    if not is_key_contact(spec, attributes):
        return None
    return invited_at + spec.window()


def response_id_of(invitation_id: str) -> str:
    """The case's key: one lack-of-response case per invitation at most."""
    return f"{RESPONSE_PREFIX}{invitation_id}"
