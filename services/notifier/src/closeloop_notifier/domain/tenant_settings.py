"""A tenant's messaging settings: timing, suppression, approval policy, links and team channel.

Stored per tenant (`PUT /v1/settings`, versioned); a tenant that saved none has the defaults
below. Everything here is policy, not plumbing (SMTP servers and secrets are the service's
environment settings).
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, field_validator

from closeloop_common.events import Category


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplyDelay(_Model):
    """Automatic customer replies wait a random time in [min, max] minutes, so they read as
    written by a person rather than fired by a machine."""

    min_minutes: float = Field(5, ge=0, le=24 * 60)
    max_minutes: float = Field(30, ge=0, le=24 * 60)

    @field_validator("max_minutes")
    @classmethod
    def _ordered(cls, value: float, info: object) -> float:
        data = getattr(info, "data", {})
        if value < data.get("min_minutes", 0):
            raise ValueError("max_minutes must not be below min_minutes")
        return value


class QuietHoursSetting(_Model):
    """No customer message is sent between `start` and `end` in the recipient's time zone
    (it waits until `end`, it is never dropped). `start` after `end` spans midnight."""

    start: time = time(21, 0)
    end: time = time(8, 0)


class FrequencyCap(_Model):
    """At most `max_messages` customer messages to one address in `days` days; more are
    suppressed (`frequency_capped`). Team messages never count."""

    max_messages: int = Field(3, ge=1, le=1000)
    days: float = Field(7, gt=0, le=365)


class ApprovalRule(_Model):
    """Detractor apologies in a segment wait as drafts for their owner (`approve`) or go at
    once (`send`). The first rule whose given fields all match decides."""

    mode: Literal["send", "approve"]
    survey_id: str | None = None
    account_id: str | None = None
    key_account: bool | None = None


class TeamChannel(_Model):
    """Where team messages go: each person's email, or one chat/CRM webhook (Standard
    Webhooks signed with `webhook_secret`)."""

    kind: Literal["email", "webhook"] = "email"
    webhook_url: AnyHttpUrl | None = None
    webhook_secret: SecretStr | None = Field(
        None, description="`whsec_` + base64 key; write-only (never shown by GET)"
    )


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


TimeZoneName = Annotated[str, Field(min_length=1, max_length=64)]


class MessagingSettings(_Model):
    time_zone: TimeZoneName = Field(
        "Europe/Warsaw",
        description="the tenant's zone: digests, and customers whose own zone is unknown",
    )
    reply_delay: ReplyDelay = ReplyDelay()
    quiet_hours: QuietHoursSetting | None = QuietHoursSetting()
    frequency_cap: FrequencyCap | None = FrequencyCap()
    detractor_approval: tuple[ApprovalRule, ...] = Field(
        (), max_length=50, description="rules for detractor apologies; none match: `send`"
    )
    messages_on: frozenset[Category] = Field(
        frozenset({Category.DETRACTOR, Category.PASSIVE, Category.PROMOTER}),
        description="the categories whose respondents get the automatic reply",
    )
    resolution_message: bool = Field(
        False, description="send the customer a 'what we did' message when a case is resolved"
    )
    review_url: AnyHttpUrl | None = None
    referral_url: AnyHttpUrl | None = None
    team_channel: TeamChannel = TeamChannel()
    team_messages: frozenset[
        Literal["owner_new_case", "sla_warning", "sla_breach", "sla_escalation", "overdue_digest"]
    ] = Field(
        frozenset(
            {"owner_new_case", "sla_warning", "sla_breach", "sla_escalation", "overdue_digest"}
        ),
        description="the team messages the tenant wants (a CRM may show new cases itself)",
    )
    digest_hour: int | None = Field(
        8, ge=0, le=23, description="local hour of the daily overdue digest; null: none"
    )
    campaign_rate_per_second: float = Field(
        50, gt=0, le=10_000, description="a change-summary campaign sends at most this fast"
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        return _zone(name)

    def approval_mode(
        self,
        *,
        survey_id: str,
        account_id: str | None,
        key_account: bool,
    ) -> Literal["send", "approve"]:
        facts = {"survey_id": survey_id, "account_id": account_id, "key_account": key_account}
        for rule in self.detractor_approval:
            wanted = rule.model_dump(exclude={"mode"}, exclude_none=True)
            if all(facts[name] == value for name, value in wanted.items()):
                return rule.mode
        return "send"
