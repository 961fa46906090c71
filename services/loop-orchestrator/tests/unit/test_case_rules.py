"""Case rules: each match condition, first match wins, the process's defaults, key accounts,
a 6 h business-hours deadline, validation, and the retroactive plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from closeloop_common.events import (
    Category,
    Customer,
    Playbook,
    ResponseCorrectedV1,
    ResponseReceivedV1,
    ResponseVersion,
    Segments,
    categorize,
)
from closeloop_orchestrator.domain.assignment import AssignmentStrategy
from closeloop_orchestrator.domain.business_time import DaysOff, WallTime, calendar_of
from closeloop_orchestrator.domain.case_commands import ContactChannel, Priority
from closeloop_orchestrator.domain.case_rules import (
    MAX_RULES,
    Answer,
    CasePlan,
    RuleSet,
    decide,
    evaluate,
)
from closeloop_orchestrator.domain.retroactive import retroactive
from closeloop_orchestrator.domain.rules import case_id_for

TENANT = "acme"
OPENED_AT = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday
H = timedelta(hours=1)
WARSAW = ZoneInfo("Europe/Warsaw")
OFFICE = calendar_of(
    time_zone="Europe/Warsaw",
    hours={d: ["08:00-16:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    days_off=DaysOff(country="PL"),
)


def answer(
    *,
    response_id: str = "r-1",
    score: int = 3,
    account_id: str | None = "acc-7",
    comment: str | None = "Dostawa spóźniona o tydzień.",
    survey_id: str = "s-2026",
    segments: Segments | None = None,
    attributes: dict[str, str] | None = None,
    answered_at: datetime = OPENED_AT - H,
) -> ResponseReceivedV1:
    return ResponseReceivedV1(
        response_id=response_id,
        survey_id=survey_id,
        customer=Customer(id=f"c-{response_id}", locale="pl-PL"),
        account_id=account_id,
        score=score,
        category=categorize(score),
        comment=comment,
        answered_at=answered_at,
        received_at=answered_at + timedelta(seconds=5),
        segments=segments or Segments(),
        attributes=attributes or {},
        source="api",
    )


def rules(*raw: dict[str, Any], **defaults: Any) -> RuleSet:
    return RuleSet.model_validate(
        {"rules": list(raw), **({"defaults": defaults} if defaults else {})}
    )


def plan(ruleset: RuleSet, response: Answer, **kwargs: Any) -> CasePlan | None:
    kwargs.setdefault("key_accounts", frozenset())
    kwargs.setdefault("clock", WallTime())
    return evaluate(ruleset, response, tenant_id=TENANT, opened_at=OPENED_AT, **kwargs)


def decided_by(ruleset: RuleSet, response: ResponseReceivedV1, **kwargs: Any) -> str | None:
    found = plan(ruleset, response, **kwargs)
    assert found is not None
    return found.decision.rule


# --- defaults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "playbook", "priority", "channel", "resolution"),
    [
        (0, Playbook.APOLOGY_CALLBACK, Priority.HIGH, ContactChannel.PHONE, 168 * H),
        (6, Playbook.APOLOGY_CALLBACK, Priority.HIGH, ContactChannel.PHONE, 168 * H),
        (7, Playbook.IMPROVEMENT_ASK, Priority.NORMAL, ContactChannel.EMAIL, None),
        (10, Playbook.THANKS_REFERRAL, Priority.LOW, ContactChannel.EMAIL, None),
    ],
)
def test_without_rules_the_process_defaults_decide_by_category(
    score: int,
    playbook: Playbook,
    priority: Priority,
    channel: ContactChannel,
    resolution: timedelta | None,
) -> None:
    found = plan(RuleSet(), answer(score=score))
    assert found is not None
    assert found.decision.rule is None
    assert found.decision.case_type == categorize(score)
    assert found.decision.playbook == playbook
    assert found.decision.priority == priority
    assert found.decision.channel == channel
    assert found.first_contact_due_at == OPENED_AT + 48 * H
    assert found.resolution_due_at == (None if resolution is None else OPENED_AT + resolution)
    assert found.decision.assignment == (
        AssignmentStrategy.ACCOUNT_OWNER,
        AssignmentStrategy.ROUND_ROBIN,
    )
    assert found.case_id == case_id_for(tenant_id=TENANT, response_id="r-1")
    assert "no rule matched" in found.decision.reason


def test_a_key_account_gets_24_hours_and_at_least_high_priority_by_default() -> None:
    promoter = plan(RuleSet(), answer(score=10), key_accounts={"acc-7"})
    assert promoter is not None
    assert promoter.decision.key_account
    assert promoter.first_contact_due_at == OPENED_AT + 24 * H
    assert promoter.decision.priority == Priority.HIGH
    assert "key account" in promoter.decision.reason

    urgent = rules({"name": "angry", "match": {"score_max": 2}, "then": {"priority": "urgent"}})
    kept = plan(urgent, answer(score=1), key_accounts={"acc-7"})
    assert kept is not None
    assert kept.decision.priority == Priority.URGENT  # never lowered to "high"


def test_a_response_without_an_account_is_never_a_key_account() -> None:
    found = plan(RuleSet(), answer(account_id=None), key_accounts={"acc-7"})
    assert found is not None
    assert not found.decision.key_account
    assert found.first_contact_due_at == OPENED_AT + 48 * H


def test_tenant_defaults_replace_the_built_in_ones() -> None:
    ruleset = rules(
        detractor={"priority": "urgent", "channel": "phone", "first_contact_hours": 12},
        key_account_first_contact_hours=8,
    )
    found = plan(ruleset, answer(score=2), key_accounts={"acc-7"})
    assert found is not None
    assert found.decision.priority == Priority.URGENT
    assert found.first_contact_due_at == OPENED_AT + 8 * H
    assert found.resolution_due_at is None  # the tenant's detractor defaults set none


# --- match conditions ------------------------------------------------------------------------------

ONE_RULE_CASES: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # (match, a response it matches, a response it does not)
    ({"categories": ["passive"]}, {"score": 8}, {"score": 9}),
    ({"categories": ["passive", "promoter"]}, {"score": 10}, {"score": 6}),
    ({"score_min": 3, "score_max": 5}, {"score": 3}, {"score": 6}),
    ({"score_min": 3, "score_max": 5}, {"score": 5}, {"score": 2}),
    ({"segments": {"survey": ["s-q4"]}}, {"survey_id": "s-q4"}, {"survey_id": "s-q3"}),
    ({"segments": {"account": ["acc-1", "acc-2"]}}, {"account_id": "acc-2"}, {"account_id": None}),
    (
        {"segments": {"region": ["mazowieckie"], "product": ["kredyt"]}},
        {"segments": Segments(region="mazowieckie", product="kredyt")},
        {"segments": Segments(region="mazowieckie", product="lokata")},
    ),
    (
        {"segments": {"channel": ["app"], "touchpoint": ["onboarding"]}},
        {"segments": Segments(channel="app", touchpoint="onboarding")},
        {"segments": Segments(channel="app")},
    ),
    (
        {"attributes": {"plan": ["gold", "platinum"]}},
        {"attributes": {"plan": "gold"}},
        {"attributes": {"plan": "basic"}},
    ),
    ({"attributes": {"plan": ["gold"]}}, {"attributes": {"plan": "gold"}}, {}),
    ({"comment": True}, {"comment": "Za długo czekałem"}, {"comment": "   "}),
    ({"comment": False}, {"comment": None}, {"comment": "Brak kontaktu"}),
]


@pytest.mark.parametrize(("match", "matching", "other"), ONE_RULE_CASES)
def test_each_match_condition_selects_its_responses(
    match: dict[str, Any], matching: dict[str, Any], other: dict[str, Any]
) -> None:
    ruleset = rules({"name": "the rule", "match": match, "then": {"priority": "urgent"}})
    assert decided_by(ruleset, answer(**matching)) == "the rule"
    assert decided_by(ruleset, answer(**other)) is None


def test_key_account_condition_both_ways() -> None:
    ruleset = rules(
        {"name": "key", "match": {"key_account": True}},
        {"name": "not key", "match": {"key_account": False}},
    )
    assert decided_by(ruleset, answer(account_id="acc-7"), key_accounts={"acc-7"}) == "key"
    assert decided_by(ruleset, answer(account_id="acc-8"), key_accounts={"acc-7"}) == "not key"


def test_every_condition_of_a_match_must_hold() -> None:
    ruleset = rules(
        {
            "name": "warsaw detractors with a comment",
            "match": {
                "categories": ["detractor"],
                "segments": {"region": ["mazowieckie"]},
                "comment": True,
            },
        }
    )
    warsaw = Segments(region="mazowieckie")
    assert decided_by(ruleset, answer(segments=warsaw)) == "warsaw detractors with a comment"
    assert decided_by(ruleset, answer(segments=warsaw, comment=None)) is None
    assert decided_by(ruleset, answer(segments=warsaw, score=9)) is None
    assert decided_by(ruleset, answer(segments=Segments(region="śląskie"))) is None


def test_the_first_matching_rule_wins_by_order_then_list_position() -> None:
    ruleset = rules(
        {"name": "broad", "order": 20, "then": {"priority": "low"}},
        {"name": "detractors", "order": 10, "match": {"categories": ["detractor"]}},
        {"name": "also detractors", "order": 10, "match": {"categories": ["detractor"]}},
    )
    assert decided_by(ruleset, answer(score=2)) == "detractors"
    assert decided_by(ruleset, answer(score=9)) == "broad"


def test_a_disabled_rule_is_skipped() -> None:
    ruleset = rules(
        {"name": "off", "enabled": False, "then": {"priority": "urgent"}},
        {"name": "on", "then": {"priority": "low"}},
    )
    assert decided_by(ruleset, answer()) == "on"


def test_a_rule_may_say_no_case() -> None:
    ruleset = rules(
        {
            "name": "ignore test survey",
            "match": {"segments": {"survey": ["s-test"]}},
            "then": {"open_case": False},
        }
    )
    assert plan(ruleset, answer(survey_id="s-test")) is None
    assert plan(ruleset, answer()) is not None


def test_what_a_rule_leaves_out_comes_from_the_defaults_of_its_case_type() -> None:
    ruleset = rules(
        {
            "name": "angry passives are called",
            "match": {"categories": ["passive"], "comment": True},
            "then": {"case_type": "detractor", "team_id": "callers"},
        }
    )
    found = plan(ruleset, answer(score=7, comment="Nie jest dobrze"))
    assert found is not None
    assert found.decision.case_type == Category.DETRACTOR
    assert found.decision.playbook == Playbook.APOLOGY_CALLBACK
    assert found.decision.priority == Priority.HIGH
    assert found.decision.channel == ContactChannel.PHONE
    assert found.decision.team_id == "callers"
    assert found.first_contact_due_at == OPENED_AT + 48 * H


def test_a_rule_sets_channel_assignment_and_resolution() -> None:
    ruleset = rules(
        {
            "name": "promoters get a meeting",
            "match": {"categories": ["promoter"]},
            "then": {
                "channel": "meeting",
                "resolution_hours": 240,
                "assignment": ["language_match", "least_loaded"],
            },
        }
    )
    found = plan(ruleset, answer(score=10))
    assert found is not None
    assert found.decision.channel == ContactChannel.MEETING
    assert found.resolution_due_at == OPENED_AT + 240 * H
    assert found.decision.assignment == (
        AssignmentStrategy.LANGUAGE_MATCH,
        AssignmentStrategy.LEAST_LOADED,
    )


# --- deadlines in business time -----------------------------------------------------------------

KEY_ACCOUNTS_IN_6_BUSINESS_HOURS = {
    "name": "key account detractors",
    "match": {"categories": ["detractor"], "key_account": True},
    "then": {"first_contact_hours": 6, "resolution_hours": 40, "business_hours": True},
}


def test_a_6_hour_business_deadline_from_friday_afternoon_is_due_on_monday() -> None:
    ruleset = rules(KEY_ACCOUNTS_IN_6_BUSINESS_HOURS)
    friday_3pm = datetime(2026, 11, 20, 15, 0, tzinfo=WARSAW)
    found = evaluate(
        ruleset,
        answer(),
        tenant_id=TENANT,
        key_accounts={"acc-7"},
        opened_at=friday_3pm,
        clock=OFFICE,
    )
    assert found is not None
    assert found.decision.business_hours
    assert found.first_contact_due_at == datetime(2026, 11, 23, 13, 0, tzinfo=WARSAW)
    # 40 business hours: 1 on Friday, then Mon..Thu 8 each = 33, and 7 on Friday 27th.
    assert found.resolution_due_at == datetime(2026, 11, 27, 15, 0, tzinfo=WARSAW)


def test_business_hours_of_the_rules_team_win_over_the_tenants_calendar() -> None:
    night_shift = calendar_of(time_zone="Europe/Warsaw", hours={"fri": ["20:00-24:00"]})
    ruleset = rules(
        {
            **KEY_ACCOUNTS_IN_6_BUSINESS_HOURS,
            "then": {"first_contact_hours": 2, "business_hours": True, "team_id": "nights"},
        }
    )
    friday_3pm = datetime(2026, 11, 20, 15, 0, tzinfo=WARSAW)
    found = evaluate(
        ruleset,
        answer(),
        tenant_id=TENANT,
        key_accounts={"acc-7"},
        opened_at=friday_3pm,
        clock=OFFICE,
        team_clocks={"nights": night_shift},
    )
    assert found is not None
    assert found.first_contact_due_at == datetime(2026, 11, 20, 22, 0, tzinfo=WARSAW)


def test_wall_time_is_counted_unless_the_rule_asks_for_business_hours() -> None:
    friday_3pm = datetime(2026, 11, 20, 15, 0, tzinfo=WARSAW)
    found = evaluate(
        RuleSet(),
        answer(),
        tenant_id=TENANT,
        key_accounts=(),
        opened_at=friday_3pm,
        clock=OFFICE,
    )
    assert found is not None
    assert found.first_contact_due_at == friday_3pm + 48 * H


def test_a_plan_becomes_the_retype_of_a_corrected_response() -> None:
    received = answer(score=3)
    corrected = ResponseCorrectedV1(
        response_id=received.response_id,
        version=2,
        survey_id=received.survey_id,
        customer=received.customer,
        account_id=received.account_id,
        score=9,
        category=Category.PROMOTER,
        answered_at=received.answered_at,
        updated_at=OPENED_AT,
        received_at=OPENED_AT,
        source="api",
        previous=ResponseVersion(
            version=1,
            survey_id=received.survey_id,
            account_id=received.account_id,
            score=3,
            category=Category.DETRACTOR,
            answered_at=received.answered_at,
        ),
    )
    found = plan(RuleSet(), corrected)
    assert found is not None
    retype = found.retype("score corrected to 9")
    assert retype.playbook == Playbook.THANKS_REFERRAL
    assert retype.priority == Priority.LOW
    assert retype.first_contact_due_at == OPENED_AT + 48 * H
    assert retype.resolution_due_at is None


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ({"rules": [{"name": "a"}, {"name": "A"}]}, "unique"),
        ({"rules": [{"name": "a", "match": {"score_min": 7, "score_max": 3}}]}, "above"),
        ({"rules": [{"name": "a", "match": {"score_max": 11}}]}, "less than or equal"),
        (
            {"rules": [{"name": "a", "match": {"categories": ["promoter"], "score_max": 8}}]},
            "never matches",
        ),
        ({"rules": [{"name": "a", "then": {"first_contact_hours": 0}}]}, "greater than 0"),
        ({"rules": [{"name": "a", "then": {"first_contact_hours": 24 * 31}}]}, "less than"),
        (
            {"rules": [{"name": "a", "then": {"first_contact_hours": 72, "resolution_hours": 24}}]},
            "before its first contact",
        ),
        (
            # 200 h to first contact is after the detractors' default resolution (168 h).
            {"rules": [{"name": "a", "then": {"first_contact_hours": 200}}]},
            "before its first contact",
        ),
        (
            {"rules": [{"name": "a", "then": {"open_case": False, "priority": "low"}}]},
            "nothing else",
        ),
        ({"rules": [{"name": "a", "then": {"assignment": []}}]}, "at least 1"),
        (
            {"rules": [{"name": "a", "then": {"assignment": ["round_robin", "round_robin"]}}]},
            "listed once",
        ),
        ({"rules": [{"name": "a", "then": {"assignment": ["dice"]}}]}, "round_robin"),
        ({"rules": [{"name": "a", "match": {"segments": {"overall": ["x"]}}}]}, "survey"),
        ({"rules": [{"name": "a", "match": {"segments": {"region": []}}}]}, "at least one value"),
        ({"rules": [{"name": "a", "match": {"attributes": {"Plan!": ["x"]}}}]}, "pattern"),
        ({"rules": [{"name": "a", "when": {}}]}, "Extra inputs"),
        ({"rules": [{"name": ""}]}, "pattern"),
        ({"rules": [{"name": f"r{i}"} for i in range(MAX_RULES + 1)]}, "at most 200"),
    ],
)
def test_invalid_rule_sets_are_refused_with_a_reason(raw: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        RuleSet.model_validate(raw)


def test_a_key_account_only_check_ignores_deadlines_that_cannot_happen() -> None:
    # 30 h first contact with a 26 h resolution is wrong for everyone; 30 h resolution with the
    # key accounts' 24 h first contact is fine, and this rule only ever sees key accounts.
    RuleSet.model_validate(
        {
            "rules": [
                {"name": "ka", "match": {"key_account": True}, "then": {"resolution_hours": 30}}
            ]
        }
    )
    with pytest.raises(ValidationError, match="before its first contact"):
        RuleSet.model_validate({"rules": [{"name": "all", "then": {"resolution_hours": 30}}]})


def test_two_hundred_rules_are_accepted_and_round_trip_through_json() -> None:
    raw = {"rules": [{"name": f"rule {i}", "order": -i} for i in range(MAX_RULES)]}
    ruleset = RuleSet.model_validate(raw)
    assert RuleSet.model_validate_json(ruleset.model_dump_json()) == ruleset
    assert ruleset.in_order()[0].name == f"rule {MAX_RULES - 1}"


# --- retroactive -----------------------------------------------------------------------------------

SINCE = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_retroactive_plan_opens_only_cases_that_do_not_exist_yet() -> None:
    ruleset = rules(
        {
            "name": "skip promoters",
            "match": {"categories": ["promoter"]},
            "then": {"open_case": False},
        },
        {"name": "warsaw", "match": {"segments": {"region": ["mazowieckie"]}}},
    )
    warsaw = Segments(region="mazowieckie")
    responses = [
        answer(response_id="old", answered_at=SINCE - H),
        answer(response_id="has-case", answered_at=SINCE + H),
        answer(response_id="promoter", score=10, answered_at=SINCE + H),
        answer(response_id="late", segments=warsaw, answered_at=SINCE + 3 * H),
        answer(response_id="early", answered_at=SINCE + 2 * H),
        answer(response_id="late", segments=warsaw, score=8, answered_at=SINCE + 3 * H),
    ]
    found = retroactive(ruleset, responses, {"has-case"}, SINCE)
    assert [item.response_id for item in found.would_open] == ["early", "late"]
    assert found.would_open[1].decision.rule == "warsaw"
    assert found.would_open[1].decision.case_type == Category.PASSIVE  # the last version counts
    assert (found.before_since, found.already_have_case, found.no_case_by_rule) == (1, 1, 1)
    assert found.other_rule == 0


def test_a_retroactive_run_of_one_rule_leaves_the_others_responses_alone() -> None:
    ruleset = rules({"name": "warsaw", "match": {"segments": {"region": ["mazowieckie"]}}})
    responses = [
        answer(response_id="w", segments=Segments(region="mazowieckie"), answered_at=SINCE),
        answer(response_id="k", segments=Segments(region="małopolskie"), answered_at=SINCE),
    ]
    found = retroactive(ruleset, responses, set(), SINCE, rule="Warsaw")
    assert [item.response_id for item in found.would_open] == ["w"]
    assert found.other_rule == 1


def test_a_retroactive_plan_sees_key_accounts() -> None:
    ruleset = rules(KEY_ACCOUNTS_IN_6_BUSINESS_HOURS)
    found = retroactive(ruleset, [answer(answered_at=SINCE)], (), SINCE, key_accounts={"acc-7"})
    assert found.would_open[0].decision.rule == "key account detractors"
    assert found.would_open[0].decision.first_contact_within == 6 * H


def test_decide_says_nothing_about_time() -> None:
    decision = decide(RuleSet(), answer(), key_accounts=())
    assert decision is not None
    assert decision.first_contact_within == 48 * H
