"""A tenant's set-up, pure: the example set-up file loads, teams need a shared mailbox, a rule
may not name an unknown team or count business hours without a calendar, the settings' default
set-up, and the escalation holder of each role."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from closeloop_common.events import Owner
from closeloop_common.tenants import TenantConfig
from closeloop_orchestrator.config import OrchestratorSettings
from closeloop_orchestrator.domain.business_time import BusinessCalendar, WallTime
from closeloop_orchestrator.domain.case_rules import RuleSet
from closeloop_orchestrator.domain.setup import Organisation, TenantSetup
from closeloop_orchestrator.service_layer.setup_store import read_setup_file

EXAMPLE = Path(__file__).resolve().parents[4] / "deploy" / "orchestrator" / "setup.example.toml"
TEAM = {"id": "t", "email": "t@acme.example", "queue": "q",
        "members": [{"id": "a", "name": "A", "email": "a@acme.example"}]}  # fmt: skip


def test_the_example_setup_file_loads_as_a_whole() -> None:
    acme = read_setup_file(EXAMPLE).tenants["acme"]
    assert acme.organisation is not None
    assert acme.rules is not None
    setup = TenantSetup(organisation=acme.organisation, rules=acme.rules)
    assert isinstance(setup.organisation.clock(), BusinessCalendar)
    assert setup.organisation.team("key-accounts").lead_id == "anna"
    assert setup.organisation.directory["marek"].name == "Marek Wiśniewski"


def test_a_team_needs_its_shared_mailbox() -> None:
    with pytest.raises(ValidationError, match="shared mailbox"):
        Organisation.model_validate({"teams": [TEAM | {"email": None}]})


def test_a_rule_naming_an_unknown_team_or_business_hours_without_a_calendar_is_refused() -> None:
    organisation = Organisation.model_validate({"teams": [TEAM]})
    for rules, message in (
        ({"rules": [{"name": "r", "then": {"team_id": "nope"}}]}, "unknown team"),
        ({"rules": [{"name": "r", "then": {"business_hours": True}}]}, "no calendar"),
    ):
        with pytest.raises(ValidationError, match=message):
            TenantSetup(organisation=organisation, rules=RuleSet.model_validate(rules))


def test_the_settings_default_setup_keeps_the_configured_slas_and_key_accounts() -> None:
    settings = OrchestratorSettings(
        orchestrator_first_contact_sla_hours=200, orchestrator_key_accounts=frozenset({"k"})
    )
    tenant = TenantConfig(
        team=(Owner(id="z", name="Zofia", email="zofia@acme.example"),), key_account_sla_hours=6
    )
    setup = settings.default_setup(tenant)
    defaults = setup.rules.defaults
    assert defaults.detractor.first_contact_hours == 200
    # A resolution deadline is never before the first contact.
    assert defaults.detractor.resolution_hours == 200
    assert defaults.key_account_first_contact_hours == 6
    assert setup.organisation.key_accounts == {"k"}
    assert [m.id for m in setup.organisation.team(None).members] == ["z"]
    assert isinstance(setup.organisation.clock(), WallTime)


def test_each_role_of_the_chain_has_its_holder() -> None:
    organisation = Organisation.model_validate(
        {
            "teams": [TEAM | {"lead_id": "a", "manager_id": "m"}],
            "people": [{"id": "m", "name": "M", "email": "m@acme.example"}],
        }
    )
    team = organisation.team(None)
    holders = {
        role: getattr(organisation.holder(role, team=team, owner_id="a"), "id", None)
        for role in ("owner", "team_lead", "manager", "m", "nobody")
    }
    assert holders == {"owner": "a", "team_lead": "a", "manager": "m", "m": "m", "nobody": None}
