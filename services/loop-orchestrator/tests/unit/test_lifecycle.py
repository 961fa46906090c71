"""A case's lifecycle: a worked example per command, the status x command table, versions, notes,
root-cause tags, reopening, re-surveys, the SLA clocks, and invariants over any command sequence."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from closeloop_common.events import Playbook
from closeloop_orchestrator.domain.case_commands import (
    MAX_ROOT_CAUSES,
    AddRootCauses,
    Claim,
    Close,
    Command,
    ContactChannel,
    ContactOutcome,
    InvalidCommand,
    LogContact,
    Priority,
    Reassign,
    Reopen,
    ResolutionOutcome,
    Resolve,
    Retype,
)
from closeloop_orchestrator.domain.lifecycle import (
    ALLOWED_FROM,
    Case,
    CaseStatus,
    InvalidTransition,
    NothingToChange,
    Transition,
    TransitionKind,
    VersionConflict,
    apply,
    first_contact_clock_running,
    open_case,
    resolution_clock_running,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
WARSAW = ZoneInfo("Europe/Warsaw")
CASE_ID = uuid.UUID("6f1c2f44-0a57-5a4e-9d43-1d2b1c0c0c01")


def new_case(owner_id: str | None = "ala") -> Case:
    case, _ = open_case(
        case_id=CASE_ID,
        tenant_id="acme",
        playbook=Playbook.APOLOGY_CALLBACK,
        priority=Priority.HIGH,
        owner_id=owner_id,
        first_contact_due_at=T0 + 48 * H,
        resolution_due_at=T0 + 7 * 24 * H,
        at=T0,
    )
    return case


def run(case: Case, command: Command, *, at: datetime = T0 + H, actor: str = "ala") -> Case:
    return step(case, command, at=at, actor=actor)[0]


def step(
    case: Case, command: Command, *, at: datetime = T0 + H, actor: str = "ala"
) -> tuple[Case, Transition]:
    return apply(case, command, expected_version=case.version, at=at, actor=actor)


REACHED = LogContact(ContactChannel.PHONE, ContactOutcome.REACHED, "Apologised; refund agreed.")


def case_in(status: CaseStatus) -> Case:
    """A case owned by ala in `status`, reached on the way when the status implies it."""
    case = new_case()
    if status == CaseStatus.OPEN:
        return case
    case = run(case, Claim("ala"))
    if status == CaseStatus.IN_PROGRESS:
        return case
    case = run(case, REACHED, at=T0 + 2 * H)
    if status == CaseStatus.CONTACTED:
        return case
    case = run(case, Resolve(ResolutionOutcome.COMPENSATED, "Refund sent."), at=T0 + 3 * H)
    if status == CaseStatus.RESOLVED:
        return case
    return run(case, Close("Customer confirmed the refund."), at=T0 + 4 * H)


# --- a worked example per command -------------------------------------------------------------


def test_a_new_case_is_open_at_version_one_with_an_opened_entry() -> None:
    case, opened = open_case(
        case_id=CASE_ID,
        tenant_id="acme",
        playbook=Playbook.APOLOGY_CALLBACK,
        priority=Priority.HIGH,
        owner_id=None,
        first_contact_due_at=T0 + 48 * H,
        resolution_due_at=None,
        at=T0,
    )
    assert (case.status, case.version, case.owner_id) == (CaseStatus.OPEN, 1, None)
    assert opened.kind == TransitionKind.OPENED
    assert (opened.from_status, opened.to_status, opened.version) == (None, CaseStatus.OPEN, 1)
    assert opened.details["first_contact_due_at"] == T0 + 48 * H


def test_the_owner_claims_without_a_note_and_the_case_is_in_progress() -> None:
    case, claimed = step(new_case(), Claim("ala"))
    assert (case.status, case.owner_id, case.version) == (CaseStatus.IN_PROGRESS, "ala", 2)
    assert claimed.kind == TransitionKind.CLAIMED
    assert (claimed.from_status, claimed.to_status) == (CaseStatus.OPEN, CaseStatus.IN_PROGRESS)
    assert (claimed.actor, claimed.at, claimed.note, claimed.version) == ("ala", T0 + H, None, 2)


def test_a_case_waiting_in_the_queue_is_claimed_by_whoever_takes_it() -> None:
    case = run(new_case(owner_id=None), Claim("ola"), actor="ola")
    assert (case.status, case.owner_id) == (CaseStatus.IN_PROGRESS, "ola")


def test_claiming_a_case_assigned_to_someone_else_is_a_reassignment() -> None:
    with pytest.raises(InvalidTransition, match="assigned to ala; reassign it with a note"):
        step(new_case(), Claim("ola"), actor="ola")


def test_reassigning_a_claimed_case_waits_for_the_new_owner_to_claim_it() -> None:
    case, moved = step(case_in(CaseStatus.IN_PROGRESS), Reassign("ola", "Ola speaks Polish."))
    assert (case.status, case.owner_id) == (CaseStatus.OPEN, "ola")
    assert moved.details == {"owner_id": "ola", "previous_owner_id": "ala"}
    assert moved.note == "Ola speaks Polish."
    assert run(case, Claim("ola"), actor="ola").status == CaseStatus.IN_PROGRESS


def test_a_contacted_case_sent_to_the_queue_stays_contacted_and_is_claimed_back() -> None:
    case = run(case_in(CaseStatus.CONTACTED), Reassign(None, "Ala is away; callback Friday."))
    assert (case.status, case.owner_id) == (CaseStatus.CONTACTED, None)
    case = run(case, Claim("ola"), actor="ola")
    assert (case.status, case.owner_id) == (CaseStatus.CONTACTED, "ola")


def test_a_reached_contact_stops_the_first_contact_clock() -> None:
    case = case_in(CaseStatus.IN_PROGRESS)
    assert first_contact_clock_running(case)
    contacted, logged = step(case, REACHED, at=T0 + 5 * H)
    assert contacted.status == CaseStatus.CONTACTED
    assert (contacted.first_contacted_at, contacted.contact_attempts) == (T0 + 5 * H, 1)
    assert not first_contact_clock_running(contacted)
    assert resolution_clock_running(contacted)
    assert logged.details == {
        "channel": "phone",
        "outcome": "reached",
        "attempt": 1,
        "first_contact": True,
    }


@pytest.mark.parametrize(
    "outcome",
    [o for o in ContactOutcome if o != ContactOutcome.REACHED],
)
def test_a_failed_attempt_is_counted_without_a_status_change(outcome: ContactOutcome) -> None:
    case, logged = step(case_in(CaseStatus.IN_PROGRESS), LogContact(ContactChannel.EMAIL, outcome))
    assert (case.status, case.contact_attempts, case.first_contacted_at) == (
        CaseStatus.IN_PROGRESS,
        1,
        None,
    )
    assert first_contact_clock_running(case)
    assert (logged.from_status, logged.to_status, logged.note) == (
        CaseStatus.IN_PROGRESS,
        CaseStatus.IN_PROGRESS,
        None,
    )


def test_a_second_reached_contact_keeps_the_first_contact_time() -> None:
    case = case_in(CaseStatus.CONTACTED)
    again, logged = step(case, REACHED, at=T0 + 30 * H)
    assert again.first_contacted_at == case.first_contacted_at == T0 + 2 * H
    assert again.contact_attempts == 2
    assert logged.details["first_contact"] is False


def test_root_causes_are_normalised_and_added_to_those_the_case_has() -> None:
    case = run(case_in(CaseStatus.CONTACTED), AddRootCauses(["  Late  Delivery ", "billing"]))
    case, added = step(case, AddRootCauses({"BILLING", "Obsługa_klienta-2"}))
    assert case.root_causes == {"late delivery", "billing", "obsługa_klienta-2"}
    assert added.details["added"] == ("obsługa_klienta-2",)
    assert added.details["root_causes"] == ("billing", "late delivery", "obsługa_klienta-2")
    assert added.from_status == added.to_status == CaseStatus.CONTACTED


def test_root_causes_may_be_added_after_resolving_but_not_once_closed() -> None:
    resolved = run(case_in(CaseStatus.RESOLVED), AddRootCauses(["pricing"]))
    assert resolved.root_causes == {"pricing"}
    with pytest.raises(InvalidTransition, match="AddRootCauses refused on a case closed"):
        step(case_in(CaseStatus.CLOSED), AddRootCauses(["pricing"]))


def test_resolving_records_the_outcome_and_stops_both_clocks() -> None:
    case, resolved = step(
        case_in(CaseStatus.CONTACTED),
        Resolve(ResolutionOutcome.SOLVED, "Courier re-sent."),
        at=T0 + 6 * H,
    )
    assert (case.status, case.resolution, case.resolved_at) == (
        CaseStatus.RESOLVED,
        ResolutionOutcome.SOLVED,
        T0 + 6 * H,
    )
    assert resolved.details == {"outcome": "solved"}
    assert not first_contact_clock_running(case)
    assert not resolution_clock_running(case)


def test_resolving_an_unreached_case_as_unreachable_stops_the_first_contact_clock_too() -> None:
    case = run(
        case_in(CaseStatus.IN_PROGRESS), LogContact(ContactChannel.PHONE, ContactOutcome.REFUSED)
    )
    case = run(case, Resolve(ResolutionOutcome.CUSTOMER_UNREACHABLE, "Refused to talk, twice."))
    assert case.status == CaseStatus.RESOLVED
    assert case.first_contacted_at is None
    assert not first_contact_clock_running(case)


@pytest.mark.parametrize(
    "outcome",
    [ResolutionOutcome.SOLVED, ResolutionOutcome.COMPENSATED, ResolutionOutcome.EXPLAINED],
)
def test_an_outcome_that_says_we_spoke_needs_the_customer_reached(
    outcome: ResolutionOutcome,
) -> None:
    with pytest.raises(InvalidTransition, match="needs the customer reached first"):
        step(case_in(CaseStatus.IN_PROGRESS), Resolve(outcome, "Done."))


def test_unreachable_needs_at_least_one_attempt_and_not_solvable_needs_none() -> None:
    with pytest.raises(InvalidTransition, match="at least one logged contact attempt"):
        step(case_in(CaseStatus.IN_PROGRESS), Resolve(ResolutionOutcome.CUSTOMER_UNREACHABLE, "."))
    case = run(case_in(CaseStatus.IN_PROGRESS), Resolve(ResolutionOutcome.NOT_SOLVABLE, "Policy."))
    assert case.status == CaseStatus.RESOLVED


def test_closing_without_a_resurvey_schedules_none() -> None:
    case, closed = step(case_in(CaseStatus.RESOLVED), Close("Confirmed."), at=T0 + 9 * H)
    assert (case.status, case.closed_at, case.resurvey_due_at) == (
        CaseStatus.CLOSED,
        T0 + 9 * H,
        None,
    )
    assert case.resolved_at == T0 + 3 * H
    assert closed.details == {"resurvey_due_at": None}


def test_closing_with_a_resurvey_asks_again_n_days_later() -> None:
    case, closed = step(case_in(CaseStatus.RESOLVED), Close("Confirmed.", 30), at=T0 + 9 * H)
    assert case.resurvey_due_at == T0 + 9 * H + timedelta(days=30)
    assert closed.details["resurvey_due_at"] == case.resurvey_due_at


def test_a_retype_from_a_corrected_response_changes_the_plan() -> None:
    case = case_in(CaseStatus.IN_PROGRESS)
    retyped, transition = step(
        case,
        Retype(Playbook.THANKS_REFERRAL, Priority.LOW, T0 + 72 * H, None),
        actor="system",
    )
    assert (retyped.playbook, retyped.priority, retyped.status) == (
        Playbook.THANKS_REFERRAL,
        Priority.LOW,
        CaseStatus.IN_PROGRESS,
    )
    assert (retyped.first_contact_due_at, retyped.resolution_due_at) == (T0 + 72 * H, None)
    assert not resolution_clock_running(retyped)
    assert transition.details == {
        "playbook": "thanks_referral",
        "previous_playbook": "apology_callback",
        "priority": "low",
        "previous_priority": "high",
        "first_contact_due_at": T0 + 72 * H,
        "previous_first_contact_due_at": T0 + 48 * H,
        "resolution_due_at": None,
        "previous_resolution_due_at": T0 + 7 * 24 * H,
    }


def test_a_retype_to_the_same_plan_changes_nothing() -> None:
    case = new_case()
    assert isinstance(case.playbook, Playbook)  # a case with an answer
    same = Retype(case.playbook, case.priority, case.first_contact_due_at, case.resolution_due_at)
    with pytest.raises(NothingToChange):
        step(case, same, actor="system")


# --- reopening --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [CaseStatus.RESOLVED, CaseStatus.CLOSED])
def test_reopening_clears_the_resolution_and_keeps_the_history(status: CaseStatus) -> None:
    case = case_in(status)
    if status == CaseStatus.RESOLVED:
        case = run(case, AddRootCauses(["refund"]), at=T0 + 5 * H)
    reopened, transition = step(case, Reopen("Refund never arrived."), at=T0 + 50 * H)
    assert reopened.status == CaseStatus.IN_PROGRESS
    assert (reopened.resolved_at, reopened.resolution, reopened.closed_at) == (None, None, None)
    assert reopened.first_contacted_at == T0 + 2 * H
    assert reopened.contact_attempts == case.contact_attempts
    assert reopened.root_causes == case.root_causes
    assert resolution_clock_running(reopened)
    assert not first_contact_clock_running(reopened)
    assert transition.details["previous_outcome"] == "compensated"


def test_reopening_cancels_the_resurvey_and_may_set_a_new_resolution_deadline() -> None:
    closed = run(case_in(CaseStatus.RESOLVED), Close("Confirmed.", 14), at=T0 + 9 * H)
    reopened, transition = step(
        closed, Reopen("Came back.", resolution_due_at=T0 + 100 * H), at=T0 + 50 * H
    )
    assert reopened.resurvey_due_at is None
    assert reopened.resolution_due_at == T0 + 100 * H
    assert transition.details["resurvey_cancelled"] is True


def test_a_reopened_case_without_an_owner_waits_in_the_queue() -> None:
    resolved = run(case_in(CaseStatus.CONTACTED), Reassign(None, "Ala left the team."))
    resolved = run(resolved, Resolve(ResolutionOutcome.EXPLAINED, "Explained the fee."))
    assert run(resolved, Reopen("Disputes it again.")).status == CaseStatus.OPEN


def test_a_reopened_case_is_resolved_again_without_a_second_first_contact() -> None:
    case = run(case_in(CaseStatus.CLOSED), Reopen("Came back."), at=T0 + 50 * H)
    case = run(case, Resolve(ResolutionOutcome.SOLVED, "Second refund."), at=T0 + 51 * H)
    assert (case.status, case.resolved_at, case.first_contacted_at) == (
        CaseStatus.RESOLVED,
        T0 + 51 * H,
        T0 + 2 * H,
    )


# --- the status x command table ---------------------------------------------------------------

ALA_CLAIMS = Claim("ala")
TO_OLA = Reassign("ola", "Handing over.")
NO_ANSWER = LogContact(ContactChannel.PHONE, ContactOutcome.NO_ANSWER)
TAG = AddRootCauses(["delivery"])
NOT_SOLVABLE = Resolve(ResolutionOutcome.NOT_SOLVABLE, "Out of our hands.")
CLOSE = Close("Done.")
REOPEN = Reopen("Back again.")
RETYPE = Retype(Playbook.IMPROVEMENT_ASK, Priority.NORMAL, T0 + 48 * H, None)
O, P, C, R, X = (  # noqa: E741 (the table reads better with one letter per status)
    CaseStatus.OPEN,
    CaseStatus.IN_PROGRESS,
    CaseStatus.CONTACTED,
    CaseStatus.RESOLVED,
    CaseStatus.CLOSED,
)
TABLE: list[tuple[Command, set[CaseStatus]]] = [
    (ALA_CLAIMS, {O}),  # contacted and owned by ala: nothing to change
    (TO_OLA, {O, P, C}),
    (NO_ANSWER, {P, C}),
    (TAG, {O, P, C, R}),
    (NOT_SOLVABLE, {P, C}),
    (CLOSE, {R}),
    (REOPEN, {R, X}),
    (RETYPE, {O, P, C}),
]


@pytest.mark.parametrize(
    ("status", "command", "allowed"),
    [(s, cmd, s in allowed) for cmd, allowed in TABLE for s in CaseStatus],
    ids=lambda v: type(v).__name__ if not isinstance(v, (CaseStatus, bool)) else str(v),
)
def test_each_command_is_allowed_only_from_its_statuses(
    status: CaseStatus, command: Command, allowed: bool
) -> None:
    case = case_in(status)
    assert case.status == status
    if allowed:
        after, transition = step(case, command)
        assert (after.version, transition.from_status) == (case.version + 1, status)
    else:
        with pytest.raises(
            InvalidTransition, match=f"{type(command).__name__} refused on a case {status.value}"
        ):
            step(case, command)


def test_the_table_covers_every_command() -> None:
    assert {type(cmd) for cmd, _ in TABLE} == set(ALLOWED_FROM)


# --- versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("expected", [1, 3, 0])
def test_a_stale_or_future_version_is_a_conflict(expected: int) -> None:
    case = case_in(CaseStatus.IN_PROGRESS)  # version 2
    with pytest.raises(VersionConflict, match="at version 2, not") as raised:
        apply(case, NO_ANSWER, expected_version=expected, at=T0, actor="ola")
    assert (raised.value.expected, raised.value.actual) == (expected, 2)


def test_two_agents_with_the_same_copy_cannot_both_write() -> None:
    case = case_in(CaseStatus.IN_PROGRESS)
    first, _ = apply(case, REACHED, expected_version=case.version, at=T0 + H, actor="ala")
    with pytest.raises(VersionConflict):
        apply(first, TO_OLA, expected_version=case.version, at=T0 + H, actor="lead")


def test_a_conflict_is_reported_before_an_invalid_transition() -> None:
    with pytest.raises(VersionConflict):
        apply(new_case(), CLOSE, expected_version=7, at=T0, actor="ala")


# --- notes and tags against the case (the commands themselves: test_case_commands.py) ---------


def test_the_transition_carries_the_note() -> None:
    _, transition = step(
        case_in(CaseStatus.CONTACTED), Resolve(ResolutionOutcome.SOLVED, " Sent. ")
    )
    assert transition.note == "Sent."


def test_tags_already_on_the_case_change_nothing() -> None:
    case = run(case_in(CaseStatus.IN_PROGRESS), AddRootCauses(["delivery"]))
    with pytest.raises(NothingToChange):
        step(case, AddRootCauses([" DELIVERY "]))


def test_a_case_has_at_most_twenty_root_causes() -> None:
    case = run(case_in(CaseStatus.IN_PROGRESS), AddRootCauses([f"tag {i}" for i in range(19)]))
    case = run(case, AddRootCauses(["tag 0", "tag 19"]))  # 20 in all
    with pytest.raises(InvalidTransition, match="at most 20 root causes"):
        step(case, AddRootCauses(["one more"]))


# --- refusals of the service's own input ------------------------------------------------------


def test_times_are_aware_and_stored_in_utc() -> None:
    with pytest.raises(ValueError, match="aware"):
        step(new_case(), ALA_CLAIMS, at=datetime(2026, 11, 23, 9, 0))
    _claimed, transition = step(
        new_case(), ALA_CLAIMS, at=datetime(2026, 11, 23, 11, 0, tzinfo=WARSAW)
    )
    assert transition.at == T0 + H
    assert transition.at.tzinfo == UTC
    closed = run(
        case_in(CaseStatus.RESOLVED), Close("Done.", 1), at=transition.at.astimezone(WARSAW)
    )
    assert closed.closed_at is not None
    assert closed.closed_at.tzinfo == UTC


def test_a_blank_actor_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="actor"):
        step(new_case(), ALA_CLAIMS, actor=" ")


def test_a_stored_state_that_breaks_the_invariants_is_refused() -> None:
    with pytest.raises(ValueError, match="resolved_at is set iff"):
        replace(new_case(), status=CaseStatus.CLOSED, closed_at=T0)


# --- invariants over any sequence -------------------------------------------------------------

notes = st.sampled_from(["Did it.", "Agreed a callback."])
owners = st.sampled_from(["ala", "ola", None])
minutes = st.integers(0, 600)


class AnySequenceOfCommands(RuleBasedStateMachine):
    """Commands of every kind, one rule per kind so each is drawn as often, sent with the right
    version; refusals are skipped. Whatever the sequence, the invariants hold after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.case = new_case()
        self.at = T0
        self.history: list[Transition] = []

    @initialize(owner=owners)
    def open(self, owner: str | None) -> None:
        self.case = new_case(owner_id=owner)

    def send(self, command: Command, after: int) -> None:
        self.at += timedelta(minutes=after)
        before = self.case
        try:
            self.case, transition = step(before, command, at=self.at)
        except InvalidTransition:
            return
        self.history.append(transition)
        case = self.case
        assert case.version == before.version + 1 == transition.version
        assert (transition.from_status, transition.to_status) == (before.status, case.status)
        if before.first_contacted_at is not None:
            assert case.first_contacted_at == before.first_contacted_at
        assert case.contact_attempts >= before.contact_attempts
        assert case.root_causes >= before.root_causes

    @rule(owner=st.sampled_from(["ala", "ola"]), after=minutes)
    def claim(self, owner: str, after: int) -> None:
        self.send(Claim(owner), after)

    @rule(owner=owners, note=notes, after=minutes)
    def reassign(self, owner: str | None, note: str, after: int) -> None:
        self.send(Reassign(owner, note), after)

    @rule(
        channel=st.sampled_from(ContactChannel),
        outcome=st.sampled_from(ContactOutcome),
        note=notes,
        after=minutes,
    )
    def log_contact(
        self, channel: ContactChannel, outcome: ContactOutcome, note: str, after: int
    ) -> None:
        self.send(LogContact(channel, outcome, note), after)

    @rule(tags=st.lists(st.sampled_from(["delivery", "price", "staff"]), min_size=1), after=minutes)
    def add_root_causes(self, tags: list[str], after: int) -> None:
        self.send(AddRootCauses(tags), after)

    @rule(outcome=st.sampled_from(ResolutionOutcome), note=notes, after=minutes)
    def resolve(self, outcome: ResolutionOutcome, note: str, after: int) -> None:
        self.send(Resolve(outcome, note), after)

    @rule(note=notes, days=st.none() | st.integers(1, 365), after=minutes)
    def close(self, note: str, days: int | None, after: int) -> None:
        self.send(Close(note, days), after)

    @rule(note=notes, after=minutes)
    def reopen(self, note: str, after: int) -> None:
        self.send(Reopen(note), after)

    @rule(
        playbook=st.sampled_from(Playbook),
        priority=st.sampled_from(Priority),
        first_contact_due_at=st.sampled_from([T0 + 24 * H, T0 + 48 * H]),
        resolution_due_at=st.sampled_from([None, T0 + 7 * 24 * H]),
        after=minutes,
    )
    def retype(
        self,
        playbook: Playbook,
        priority: Priority,
        first_contact_due_at: datetime,
        resolution_due_at: datetime | None,
        after: int,
    ) -> None:
        self.send(Retype(playbook, priority, first_contact_due_at, resolution_due_at), after)

    @invariant()
    def version_counts_the_accepted_commands(self) -> None:
        assert self.case.version == 1 + len(self.history)
        assert [t.version for t in self.history] == list(range(2, 2 + len(self.history)))

    @invariant()
    def a_closed_case_was_resolved_first(self) -> None:
        case = self.case
        assert case.status in set(CaseStatus)
        if case.status == CaseStatus.CLOSED:
            assert case.resolved_at is not None
            assert case.closed_at is not None
            assert case.resolved_at <= case.closed_at
        else:
            assert case.closed_at is None
            assert case.resurvey_due_at is None
        assert len(case.root_causes) <= MAX_ROOT_CAUSES

    @invariant()
    def the_clocks_follow_the_status(self) -> None:
        case = self.case
        if first_contact_clock_running(case):
            assert case.first_contacted_at is None
        if case.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
            assert not first_contact_clock_running(case)
            assert not resolution_clock_running(case)


AnySequenceOfCommands.TestCase.settings = settings(max_examples=200, stateful_step_count=40)
TestAnySequenceOfCommandsKeepsTheInvariants = AnySequenceOfCommands.TestCase
