"""Assignment: each strategy, away members, the queue fallback, ties, the Polish detection,
and two properties (round robin is fair; least-loaded never picks a busier member)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from closeloop_orchestrator.domain.assignment import (
    AssignmentStrategy,
    CaseFacts,
    Member,
    Team,
    Workload,
    assign,
    customer_language,
    reads_as_polish,
)

ACCOUNT = AssignmentStrategy.ACCOUNT_OWNER
ROUND = AssignmentStrategy.ROUND_ROBIN
LEAST = AssignmentStrategy.LEAST_LOADED
LANGUAGE = AssignmentStrategy.LANGUAGE_MATCH


def member(id_: str, *languages: str, away: bool = False, lead: bool = False) -> Member:
    return Member(
        id=id_,
        name=id_.title(),
        email=f"{id_}@acme.example",
        languages=languages,
        away=away,
        lead=lead,
    )


ANNA = member("anna", "pl", "en", lead=True)
JAN = member("jan", "pl")
EMMA = member("emma", "en")
SUPPORT = Team(
    id="support",
    members=(ANNA, JAN, EMMA),
    lead_id="anna",
    manager_id="marta",
    queue="support-queue",
)


def away(team: Team, *ids: str) -> Team:
    members = tuple(m.model_copy(update={"away": m.id in ids}) for m in team.members)
    return team.model_copy(update={"members": members})


def owner_id(
    strategies: tuple[AssignmentStrategy, ...],
    *,
    team: Team = SUPPORT,
    case: CaseFacts = CaseFacts(),
    workload: Workload = Workload(),
) -> str | None:
    found = assign(strategies, team=team, case=case, workload=workload)
    return None if found.owner is None else found.owner.id


# --- account owner ---------------------------------------------------------------------------------


def test_the_account_owner_gets_the_accounts_case() -> None:
    found = assign(
        (ACCOUNT, ROUND),
        team=SUPPORT,
        case=CaseFacts(account_id="acc-7"),
        workload=Workload(account_owners={"acc-7": "emma"}),
    )
    assert found.owner == EMMA
    assert found.strategy is ACCOUNT
    assert "acc-7" in found.reason
    assert found.tried == ()
    assert found.round_robin_counter == 0  # round robin did not take a turn


def test_an_account_owner_from_another_team_is_found_in_the_directory() -> None:
    sales = member("piotr", "pl")
    found = assign(
        (ACCOUNT,),
        team=SUPPORT,
        case=CaseFacts(account_id="acc-7"),
        workload=Workload(account_owners={"acc-7": "piotr"}, directory={"piotr": sales}),
    )
    assert found.owner == sales
    assert found.team_id == "support"


@pytest.mark.parametrize(
    ("case", "owners", "team", "why"),
    [
        (CaseFacts(account_id=None), {"acc-7": "emma"}, SUPPORT, "has no account"),
        (CaseFacts(account_id="acc-8"), {"acc-7": "emma"}, SUPPORT, "no owner mapped"),
        (CaseFacts(account_id="acc-7"), {"acc-7": "ghost"}, SUPPORT, "not a known member"),
        (CaseFacts(account_id="acc-7"), {"acc-7": "emma"}, away(SUPPORT, "emma"), "is away"),
    ],
)
def test_without_a_present_account_owner_the_next_strategy_decides(
    case: CaseFacts, owners: dict[str, str], team: Team, why: str
) -> None:
    found = assign((ACCOUNT, ROUND), team=team, case=case, workload=Workload(account_owners=owners))
    assert found.strategy is ROUND
    assert found.owner == ANNA
    assert len(found.tried) == 1
    assert found.tried[0].startswith("account_owner: ")
    assert why in found.tried[0]


# --- round robin -------------------------------------------------------------------------------------


def test_round_robin_takes_turns_in_team_order_and_advances_the_counter() -> None:
    picked = []
    counter = 0
    for _ in range(6):
        found = assign(
            (ROUND,), team=SUPPORT, case=CaseFacts(), workload=Workload(round_robin_counter=counter)
        )
        assert found.owner is not None
        picked.append(found.owner.id)
        counter = found.round_robin_counter
    assert picked == ["anna", "jan", "emma", "anna", "jan", "emma"]
    assert counter == 6


def test_round_robin_skips_members_who_are_away() -> None:
    team = away(SUPPORT, "jan")
    picked = [
        owner_id((ROUND,), team=team, workload=Workload(round_robin_counter=c)) for c in range(4)
    ]
    assert picked == ["anna", "emma", "anna", "emma"]


# --- least loaded ----------------------------------------------------------------------------------


def test_least_loaded_picks_the_member_with_fewest_open_cases() -> None:
    loads = Workload(open_cases={"anna": 5, "jan": 2, "emma": 3})
    found = assign((LEAST,), team=SUPPORT, case=CaseFacts(), workload=loads)
    assert found.owner == JAN
    assert "(2)" in found.reason


def test_least_loaded_ties_go_to_the_member_listed_first_and_missing_counts_are_zero() -> None:
    assert owner_id((LEAST,), workload=Workload(open_cases={"anna": 1})) == "jan"
    assert owner_id((LEAST,), workload=Workload(open_cases={"anna": 1, "jan": 1, "emma": 1})) == (
        "anna"
    )


def test_least_loaded_skips_an_idle_member_who_is_away() -> None:
    loads = Workload(open_cases={"anna": 5, "jan": 0, "emma": 3})
    assert owner_id((LEAST,), team=away(SUPPORT, "jan"), workload=loads) == "emma"


# --- language -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "comment",
    [
        "Kurier się spóźnił",  # diacritics
        "Dostawa trwala tydzien, nie jest dobrze",  # no diacritics: two common words
        "ZAMÓWIENIE przyszło uszkodzone",
    ],
)
def test_polish_comments_read_as_polish(comment: str) -> None:
    assert reads_as_polish(comment)


@pytest.mark.parametrize(
    "comment",
    [None, "", "The delivery was late", "Ale was flat", "¿Por qué tardó tanto? Canción", "Jan"],
)
def test_other_comments_do_not(comment: str | None) -> None:
    assert not reads_as_polish(comment)


def test_a_polish_comment_goes_to_a_polish_speaker_whatever_the_locale() -> None:
    case = CaseFacts(locale="en-GB", comment="Obsługa była niemiła")
    assert customer_language(case) == ("pl", "the comment reads as Polish")
    found = assign((LANGUAGE,), team=SUPPORT, case=case, workload=Workload(open_cases={"anna": 4}))
    assert found.owner == JAN  # both speak Polish; Jan has fewer open cases
    assert "speaks 'pl'" in found.reason


def test_without_a_polish_comment_the_locale_decides() -> None:
    case = CaseFacts(locale="en-GB", comment="Slow delivery")
    found = assign((LANGUAGE,), team=SUPPORT, case=case, workload=Workload(open_cases={"anna": 4}))
    assert found.owner == EMMA
    assert "locale 'en-GB'" in found.reason


def test_language_match_cannot_decide_without_a_language_or_a_speaker() -> None:
    unknown = assign((LANGUAGE,), team=SUPPORT, case=CaseFacts(), workload=Workload())
    assert unknown.owner is None
    assert "unknown" in unknown.tried[0]
    german = assign((LANGUAGE,), team=SUPPORT, case=CaseFacts(locale="de-DE"), workload=Workload())
    assert german.owner is None
    assert "speaks 'de'" in german.tried[0]


def test_polish_speakers_who_are_away_are_skipped() -> None:
    case = CaseFacts(comment="Nie polecam")
    assert owner_id((LANGUAGE,), team=away(SUPPORT, "anna", "jan"), case=case) is None
    assert owner_id((LANGUAGE,), team=away(SUPPORT, "anna"), case=case) == "jan"


# --- fallback ----------------------------------------------------------------------------------------


def test_when_nobody_fits_the_case_waits_in_the_team_queue() -> None:
    found = assign(
        (ACCOUNT, LANGUAGE, ROUND),
        team=away(SUPPORT, "anna", "jan", "emma"),
        case=CaseFacts(account_id="acc-7", comment="Nie jest dobrze"),
        workload=Workload(account_owners={"acc-7": "emma"}, round_robin_counter=9),
    )
    assert found.owner is None
    assert found.strategy is None
    assert found.queue == "support-queue"
    assert "support-queue" in found.reason
    assert [t.split(":")[0] for t in found.tried] == [
        "account_owner",
        "language_match",
        "round_robin",
    ]
    assert found.round_robin_counter == 9


def test_an_empty_team_sends_everything_to_its_queue() -> None:
    empty = Team(id="new", queue="new-queue")
    for strategy in AssignmentStrategy:
        found = assign((strategy,), team=empty, case=CaseFacts(locale="pl"), workload=Workload())
        assert found.queue == "new-queue"


# --- teams -----------------------------------------------------------------------------------------


def test_the_escalation_chain_is_owner_lead_manager_each_once() -> None:
    assert SUPPORT.escalation_chain("jan") == ("jan", "anna", "marta")
    assert SUPPORT.escalation_chain("anna") == ("anna", "marta")
    assert SUPPORT.escalation_chain(None) == ("anna", "marta")


def test_a_member_becomes_a_case_owner_on_the_wire() -> None:
    assert ANNA.owner().model_dump() == {"id": "anna", "name": "Anna", "email": "anna@acme.example"}


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ({"id": "t", "queue": "q", "members": [ANNA.model_dump(), ANNA.model_dump()]}, "twice"),
        ({"id": "t", "queue": "q", "lead_id": "nobody"}, "not a member"),
        ({"id": "t", "queue": ""}, "at least 1"),
        (
            {"id": "t", "queue": "q", "members": [{**JAN.model_dump(), "languages": ["polish"]}]},
            "pattern",
        ),
        (
            {"id": "t", "queue": "q", "members": [{**JAN.model_dump(), "phone": "1"}]},
            "Extra inputs",
        ),
    ],
)
def test_invalid_teams_are_refused(raw: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Team.model_validate(raw)


def test_languages_are_read_in_lower_case() -> None:
    assert Member.model_validate({**EMMA.model_dump(), "languages": ["PL"]}).languages == ("pl",)


def test_a_negative_round_robin_counter_is_refused() -> None:
    with pytest.raises(ValueError, match="not negative"):
        Workload(round_robin_counter=-1)


# --- properties -------------------------------------------------------------------------------------

teams_st = (
    st.lists(st.booleans(), min_size=1, max_size=8)
    .filter(lambda flags: not all(flags))
    .map(
        lambda flags: Team(
            id="t",
            queue="q",
            members=tuple(member(f"m{i}", away=flag) for i, flag in enumerate(flags)),
        )
    )
)


@given(team=teams_st, k=st.integers(1, 5), start=st.integers(0, 10_000))
def test_round_robin_gives_each_present_member_k_of_k_times_n_cases(
    team: Team, k: int, start: int
) -> None:
    present = team.present()
    counts: Counter[str] = Counter()
    counter = start
    for _ in range(k * len(present)):
        found = assign(
            (ROUND,), team=team, case=CaseFacts(), workload=Workload(round_robin_counter=counter)
        )
        assert found.owner is not None
        counts[found.owner.id] += 1
        counter = found.round_robin_counter
    assert counts == {m.id: k for m in present}


@given(
    team=teams_st,
    loads=st.dictionaries(st.sampled_from([f"m{i}" for i in range(8)]), st.integers(0, 50)),
)
def test_least_loaded_never_picks_a_busier_member_over_a_less_loaded_present_one(
    team: Team, loads: dict[str, int]
) -> None:
    found = assign((LEAST,), team=team, case=CaseFacts(), workload=Workload(open_cases=loads))
    assert found.owner is not None
    assert not found.owner.away
    chosen = loads.get(found.owner.id, 0)
    assert all(chosen <= loads.get(m.id, 0) for m in team.present())
    # and among the least loaded, the one listed first
    first = next(m for m in team.present() if loads.get(m.id, 0) == chosen)
    assert found.owner == first
