"""The case events' wire values are exactly the domain's: a new status, command outcome or
priority in the domain must reach the contracts (a new contract version if it is not additive)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, get_args

import pytest

from closeloop_common.events import (
    CaseStatusName,
    CaseTransitionName,
    ContactChannelName,
    ContactOutcomeName,
    PriorityName,
    ResolutionOutcomeName,
)
from closeloop_orchestrator.domain.case_commands import (
    ContactChannel,
    ContactOutcome,
    Priority,
    ResolutionOutcome,
)
from closeloop_orchestrator.domain.lifecycle import CaseStatus, TransitionKind
from closeloop_orchestrator.domain.sla import ClockName, TimerKind


@pytest.mark.parametrize(
    ("wire", "domain", "left_out"),
    [
        (CaseStatusName, CaseStatus, set()),
        (CaseTransitionName, TransitionKind, {"opened"}),  # `case.opened.v1` says that one
        (PriorityName, Priority, set()),
        (ContactChannelName, ContactChannel, set()),
        (ContactOutcomeName, ContactOutcome, set()),
        (ResolutionOutcomeName, ResolutionOutcome, set()),
    ],
)
def test_wire_values_are_the_domain_values(
    wire: Any, domain: type[StrEnum], left_out: set[str]
) -> None:
    assert set(get_args(wire)) == {m.value for m in domain} - left_out


def test_sla_alert_clocks_and_kinds_are_the_domain_values() -> None:
    from closeloop_common.events import CaseSlaAlertV1

    fields = CaseSlaAlertV1.model_fields
    # The re-survey's timer is not an SLA alert: it fires `case.resurvey_due.v1`.
    sla_clocks = {c.value for c in ClockName} - {ClockName.RESURVEY.value}
    assert set(get_args(fields["clock"].annotation)) == sla_clocks
    assert set(get_args(fields["kind"].annotation)) == {k.value for k in TimerKind} - {"due"}
