"""The "you said, we did" campaign, as pure rules: its identity, its states, its throttle, and
what each customer reads (which language, which salutation).

- A campaign is one change-summary event: its id is derived from the event's tenant and id, so
  the same event delivered again is the same campaign (`campaign_id_of`).
- States (`CampaignStatus`): `expanding` (recipients are being turned into messages, page by
  page) -> `sending` (every recipient has its message; the dispatcher works through them) ->
  `done` (none is left pending or sending). `paused` and `cancelled` are set by people
  (`transition`); `done` and `cancelled` are final.
- Throttle: the n-th message of a campaign is due `n / rate_per_second` seconds after the
  campaign's first slot (`slots`), never in the past: the schedule restarts from now when the
  campaign fell behind (it was paused, or its expander was down), so a late campaign does not
  burst.
- Language: a customer reads the change in their own language when the event has it (exact
  locale, else the same language, `pl-PL` for `pl`), else in the event's own `text`
  (`choose_text`). The templates are chosen by the same language.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from closeloop_common.events import ChangeSummaryV1, ChangeText
from closeloop_notifier.domain.rendering import customer_context

# Fixed forever: campaign ids derive from it (a new namespace would open a second campaign for
# an event delivered again after the change).
CAMPAIGN_NAMESPACE = uuid.UUID("6f1c7a52-3d0e-4a8b-9b1e-5c2f0d7e4a91")

CampaignStatus = Literal["expanding", "sending", "paused", "done", "cancelled"]
CAMPAIGN_STATUSES: tuple[CampaignStatus, ...] = (
    "expanding",
    "sending",
    "paused",
    "done",
    "cancelled",
)
ACTIVE_STATUSES: frozenset[CampaignStatus] = frozenset({"expanding", "sending"})
FINAL_STATUSES: frozenset[CampaignStatus] = frozenset({"done", "cancelled"})
Action = Literal["pause", "resume", "cancel"]


def campaign_id_of(tenant_id: str, event_id: str) -> uuid.UUID:
    """The campaign of a change-summary event (the same for every delivery of it)."""
    return uuid.uuid5(CAMPAIGN_NAMESPACE, f"{tenant_id}\n{event_id}")


class TransitionRefused(Exception):
    """An action the campaign's current status does not allow (a finished campaign)."""

    def __init__(self, action: Action, status: str) -> None:
        super().__init__(f"a {status} campaign cannot be told to {action}")
        self.action = action
        self.status = status


def transition(status: CampaignStatus, action: Action, *, expanded: bool) -> CampaignStatus | None:
    """The status after `action`, or None when the campaign is in that state already (asking
    twice is harmless: a client may retry). `expanded`: every recipient has its message, so a
    resumed campaign goes on `sending` rather than `expanding`."""
    if status in FINAL_STATUSES:
        if (action, status) == ("cancel", "cancelled"):
            return None
        raise TransitionRefused(action, status)
    if action == "pause":
        return None if status == "paused" else "paused"
    if action == "resume":
        if status != "paused":
            return None
        return "sending" if expanded else "expanding"
    return "cancelled"


def slots(start: datetime, count: int, rate_per_second: float) -> tuple[list[datetime], datetime]:
    """Due times of `count` messages sent at `rate_per_second` from `start`, and the first slot
    after them."""
    return (
        [start + timedelta(seconds=i / rate_per_second) for i in range(count)],
        start + timedelta(seconds=count / rate_per_second),
    )


def language_of(locale: str) -> str:
    """The primary language of a locale: `pl-PL` -> `pl`."""
    return locale.split("-", 1)[0].lower()


@dataclass(frozen=True, slots=True)
class ChosenText:
    language: str  # the language templates are rendered in
    text: ChangeText


def choose_text(change: ChangeSummaryV1, customer_locale: str | None) -> ChosenText:
    """The change's text for a customer of `customer_locale` (see the module docstring)."""
    texts: dict[str, ChangeText] = {**change.translations, change.locale: change.text}
    if customer_locale:
        by_locale = {locale.lower(): text for locale, text in texts.items()}
        exact = by_locale.get(customer_locale.lower())
        if exact is not None:
            return ChosenText(language_of(customer_locale), exact)
        wanted = language_of(customer_locale)
        # The event's own text first, then its translations in the order they were given.
        for locale in (change.locale, *change.translations):
            if language_of(locale) == wanted:
                return ChosenText(wanted, texts[locale])
    return ChosenText(language_of(change.locale), change.text)


def change_view(change: ChangeSummaryV1, text: ChangeText) -> dict[str, Any]:
    """The `change` of the template context."""
    return {
        "title": text.title,
        "status": change.status,
        "summary": text.summary,
        "reason": text.reason,
        "you_said": text.you_said,
    }


@dataclass(frozen=True, slots=True)
class Reader:
    """Who a campaign message is for, as the template sees them."""

    customer_id: str
    name: str | None
    email: str | None  # the normalised address, if any
    locale: str | None


def template_context(
    change: ChangeSummaryV1, reader: Reader, *, tenant: Mapping[str, Any], now: datetime
) -> tuple[str, dict[str, Any]]:
    """The language to render in, and the template context of one reader's message (the
    `unsubscribe_url` is added by the expander, the `greeting` by the composer)."""
    chosen = choose_text(change, reader.locale)
    return chosen.language, {
        "now": now,
        "tenant": tenant,
        "customer": customer_context(reader.customer_id, reader.name, reader.email),
        "change": change_view(change, chosen.text),
        "unsubscribe_url": None,
    }
