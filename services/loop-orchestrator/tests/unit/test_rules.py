"""Case rules: playbook by category, a stable owner per account, and the first-contact deadline."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop_common.events import (
    Category,
    Customer,
    Owner,
    Playbook,
    ResponseReceivedV1,
    categorize,
)
from closeloop_orchestrator.domain.rules import (
    CASE_ID_NAMESPACE,
    PLAYBOOKS,
    CasePolicy,
    assign_owner,
    case_id_for,
    plan_case,
)

TENANT = "acme"
OPENED_AT = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
TEAM = (
    Owner(id="o-1", name="Anna Nowak", email="anna@acme.example"),
    Owner(id="o-2", name="Jan Kowalski", email="jan@acme.example"),
    Owner(id="o-3", name="Ewa Wiśniewska", email="ewa@acme.example"),
)

keys_st = st.text(min_size=1, max_size=60)


def answer(
    *, customer_id: str = "c-42", account_id: str | None = "acc-7", score: int = 3
) -> ResponseReceivedV1:
    return ResponseReceivedV1(
        response_id=f"r-{customer_id}",
        survey_id="s-2024",
        customer=Customer(id=customer_id),
        account_id=account_id,
        score=score,
        category=categorize(score),
        answered_at=OPENED_AT - timedelta(hours=1),
        received_at=OPENED_AT - timedelta(minutes=59),
        source="api",
    )


# --- playbooks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "playbook"),
    [
        (0, Playbook.APOLOGY_CALLBACK),
        (6, Playbook.APOLOGY_CALLBACK),
        (7, Playbook.IMPROVEMENT_ASK),
        (8, Playbook.IMPROVEMENT_ASK),
        (9, Playbook.THANKS_REFERRAL),
        (10, Playbook.THANKS_REFERRAL),
    ],
)
def test_the_playbook_follows_the_category_of_the_answer(score: int, playbook: Playbook) -> None:
    plan = plan_case(
        answer(score=score), tenant_id=TENANT, policy=CasePolicy(team=TEAM), opened_at=OPENED_AT
    )
    assert plan.playbook is playbook


def test_every_category_has_a_playbook() -> None:
    assert set(PLAYBOOKS) == set(Category)
    assert PLAYBOOKS[Category.DETRACTOR] is Playbook.APOLOGY_CALLBACK
    assert PLAYBOOKS[Category.PASSIVE] is Playbook.IMPROVEMENT_ASK
    assert PLAYBOOKS[Category.PROMOTER] is Playbook.THANKS_REFERRAL


# --- owner assignment ------------------------------------------------------------------------


@given(keys_st)
def test_assign_owner_gives_the_same_key_the_same_owner(key: str) -> None:
    first = assign_owner(TEAM, tenant_id=TENANT, assignment_key=key)
    assert first in TEAM
    assert assign_owner(TEAM, tenant_id=TENANT, assignment_key=key) == first


def test_assign_owner_spreads_many_keys_over_the_whole_team() -> None:
    load = Counter(
        assign_owner(TEAM, tenant_id=TENANT, assignment_key=f"account:acc-{i}").id
        for i in range(300)
    )
    assert set(load) == {owner.id for owner in TEAM}
    # Roughly even: a hash that favoured one owner would leave another far below 100.
    assert min(load.values()) >= 60


@given(keys_st)
def test_a_team_of_one_gets_every_key(key: str) -> None:
    assert assign_owner(TEAM[:1], tenant_id=TENANT, assignment_key=key) == TEAM[0]


def test_case_policy_needs_at_least_one_owner() -> None:
    with pytest.raises(ValueError, match="at least one owner"):
        CasePolicy(team=())


# --- plan_case: who ----------------------------------------------------------------------------


@given(st.lists(st.text(min_size=1, max_size=30), min_size=2, max_size=10, unique=True))
def test_one_account_keeps_one_owner_whoever_answers(customer_ids: list[str]) -> None:
    policy = CasePolicy(team=TEAM)
    owners = {
        plan_case(
            answer(customer_id=customer_id, account_id="acc-7"),
            tenant_id=TENANT,
            policy=policy,
            opened_at=OPENED_AT,
        ).owner
        for customer_id in customer_ids
    }
    assert owners == {assign_owner(TEAM, tenant_id=TENANT, assignment_key="account:acc-7")}


def test_a_response_without_an_account_is_assigned_by_customer() -> None:
    policy = CasePolicy(team=TEAM)
    for i in range(30):
        customer_id = f"c-{i}"
        plan = plan_case(
            answer(customer_id=customer_id, account_id=None),
            tenant_id=TENANT,
            policy=policy,
            opened_at=OPENED_AT,
        )
        expected = assign_owner(TEAM, tenant_id=TENANT, assignment_key=f"customer:{customer_id}")
        assert plan.owner == expected


def test_customers_without_an_account_are_spread_over_the_team() -> None:
    policy = CasePolicy(team=TEAM)
    owners = {
        plan_case(
            answer(customer_id=f"c-{i}", account_id=None),
            tenant_id=TENANT,
            policy=policy,
            opened_at=OPENED_AT,
        ).owner
        for i in range(300)
    }
    assert owners == set(TEAM)


# --- plan_case: SLA ------------------------------------------------------------------------------


def test_key_account_gets_the_shorter_first_contact_sla() -> None:
    policy = CasePolicy(team=TEAM, key_accounts=frozenset({"acc-7"}))
    plan = plan_case(
        answer(account_id="acc-7"), tenant_id=TENANT, policy=policy, opened_at=OPENED_AT
    )
    assert plan.key_account is True
    assert plan.first_contact_due_at == OPENED_AT + timedelta(hours=24)


def test_other_accounts_get_the_default_48_hour_sla() -> None:
    policy = CasePolicy(team=TEAM, key_accounts=frozenset({"acc-7"}))
    plan = plan_case(
        answer(account_id="acc-8"), tenant_id=TENANT, policy=policy, opened_at=OPENED_AT
    )
    assert plan.key_account is False
    assert plan.first_contact_due_at == OPENED_AT + timedelta(hours=48)


def test_a_response_without_an_account_is_never_a_key_account() -> None:
    policy = CasePolicy(team=TEAM, key_accounts=frozenset({"acc-7"}))
    plan = plan_case(answer(account_id=None), tenant_id=TENANT, policy=policy, opened_at=OPENED_AT)
    assert plan.key_account is False
    assert plan.first_contact_due_at == OPENED_AT + timedelta(hours=48)


def test_configured_slas_replace_the_defaults() -> None:
    policy = CasePolicy(
        team=TEAM,
        first_contact_sla=timedelta(hours=72),
        key_account_sla=timedelta(hours=4),
        key_accounts=frozenset({"acc-7"}),
    )
    key = plan_case(
        answer(account_id="acc-7"), tenant_id=TENANT, policy=policy, opened_at=OPENED_AT
    )
    other = plan_case(
        answer(account_id="acc-8"), tenant_id=TENANT, policy=policy, opened_at=OPENED_AT
    )
    assert key.first_contact_due_at == OPENED_AT + timedelta(hours=4)
    assert other.first_contact_due_at == OPENED_AT + timedelta(hours=72)


# --- case id -----------------------------------------------------------------------------------


def test_the_case_id_of_a_response_is_a_fixed_uuid5_worked_example() -> None:
    # The namespace is uuid5(NAMESPACE_URL, "urn:closeloop:case-id"); the name "<tenant>:<response>".
    # These values are in stored cases and sent messages: they must never change.
    assert uuid.UUID("d5279309-5e49-5d08-859c-ec59de98b00f") == CASE_ID_NAMESPACE
    assert case_id_for(tenant_id="acme", response_id="r-1") == uuid.UUID(
        "788cb72b-f6e0-5d5f-a791-b4544216d0a2"
    )
    assert case_id_for(tenant_id="globex", response_id="r-1") == uuid.UUID(
        "c66de157-9d14-554d-b3b0-ef0623e3e234"
    )


@given(keys_st, keys_st)
def test_distinct_responses_get_distinct_case_ids(first: str, second: str) -> None:
    same = case_id_for(tenant_id=TENANT, response_id=first) == case_id_for(
        tenant_id=TENANT, response_id=second
    )
    assert same == (first == second)


def test_the_plan_carries_the_case_id_of_the_tenant_and_response() -> None:
    plan = plan_case(answer(), tenant_id=TENANT, policy=CasePolicy(team=TEAM), opened_at=OPENED_AT)
    assert plan.case_id == case_id_for(tenant_id=TENANT, response_id="r-c-42")
