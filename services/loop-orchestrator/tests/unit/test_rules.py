"""A case's identity (a fixed uuid5 of tenant and response) and its playbook by case type."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from closeloop_common.events import Category, Playbook
from closeloop_orchestrator.domain.rules import CASE_ID_NAMESPACE, PLAYBOOKS, case_id_for

keys_st = st.text(min_size=1, max_size=60)


def test_every_category_has_its_playbook() -> None:
    assert set(PLAYBOOKS) == set(Category)
    assert PLAYBOOKS[Category.DETRACTOR] is Playbook.APOLOGY_CALLBACK
    assert PLAYBOOKS[Category.PASSIVE] is Playbook.IMPROVEMENT_ASK
    assert PLAYBOOKS[Category.PROMOTER] is Playbook.THANKS_REFERRAL


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
    same = case_id_for(tenant_id="acme", response_id=first) == case_id_for(
        tenant_id="acme", response_id=second
    )
    assert same == (first == second)
