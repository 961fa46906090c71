"""A tenant's messaging settings: defaults, validation, the detractor approval rules, and the
draft editor's HTML (escaped)."""

from __future__ import annotations

import uuid
from datetime import time

import pytest
from pydantic import ValidationError

from closeloop_notifier.domain.kinds import (
    CUSTOMER_KINDS,
    TEAM_KINDS,
    Kind,
    alert_key,
    audience_of,
    campaign_key,
    case_key,
)
from closeloop_notifier.domain.rendering import one_line
from closeloop_notifier.domain.tenant_settings import ApprovalRule, MessagingSettings
from closeloop_notifier.service_layer.drafts import html_of_text


def test_defaults_are_the_documented_policy() -> None:
    settings = MessagingSettings()
    assert (settings.reply_delay.min_minutes, settings.reply_delay.max_minutes) == (5, 30)
    assert settings.quiet_hours is not None
    assert (settings.quiet_hours.start, settings.quiet_hours.end) == (time(21), time(8))
    assert settings.frequency_cap is not None
    assert (settings.frequency_cap.max_messages, settings.frequency_cap.days) == (3, 7)
    assert settings.approval_mode(survey_id="s", account_id=None, key_account=True) == "send"
    assert settings.time_zone == "Europe/Warsaw"


@pytest.mark.parametrize(
    "bad",
    [
        {"time_zone": "Mars/Olympus"},
        {"reply_delay": {"min_minutes": 30, "max_minutes": 5}},
        {"frequency_cap": {"max_messages": 0, "days": 7}},
        {"digest_hour": 24},
        {"unknown": 1},
        {"team_messages": ["thanks"]},
    ],
)
def test_settings_that_make_no_sense_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MessagingSettings.model_validate(bad)


def test_the_first_matching_approval_rule_decides() -> None:
    settings = MessagingSettings(
        detractor_approval=(
            ApprovalRule(mode="send", account_id="small-shop"),
            ApprovalRule(mode="approve", key_account=True),
            ApprovalRule(mode="approve", survey_id="onboarding"),
        )
    )
    mode = settings.approval_mode
    assert mode(survey_id="nps", account_id="small-shop", key_account=True) == "send"
    assert mode(survey_id="nps", account_id="big-corp", key_account=True) == "approve"
    assert mode(survey_id="onboarding", account_id=None, key_account=False) == "approve"
    assert mode(survey_id="nps", account_id=None, key_account=False) == "send"


def test_every_kind_has_one_audience_and_keys_are_distinct() -> None:
    assert set(Kind) == CUSTOMER_KINDS | TEAM_KINDS
    assert not CUSTOMER_KINDS & TEAM_KINDS
    assert audience_of(Kind.APOLOGY) == "customer"
    assert audience_of(Kind.SLA_BREACH) == "team"
    case = uuid.uuid4()
    keys = {
        case_key(case, Kind.APOLOGY),
        case_key(case, Kind.CASE_RESOLVED),
        alert_key(case, "first_contact", "breach", 0, "2026-12-07T10:00:00+00:00"),
        alert_key(case, "first_contact", "breach", 0, "2026-12-08T10:00:00+00:00"),
        campaign_key(case, "anna@example.pl"),
    }
    assert len(keys) == 5


def test_an_edited_draft_becomes_escaped_html_and_a_one_line_subject() -> None:
    html = html_of_text('Dzień dobry,\n<script>alert("x")</script>\n\nPozdrawiam', "pl")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert html.count("<p>") == 2
    assert 'lang="pl"' in html
    assert one_line("Re: sprawa\r\nBcc: evil@example.com") == "Re: sprawa Bcc: evil@example.com"
