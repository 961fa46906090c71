"""Each tenant's case policy: its own team, key accounts and SLAs from the tenants file, and the
environment settings for whatever it leaves out (and for every tenant not listed)."""

from __future__ import annotations

from datetime import timedelta

from closeloop_common.events import Owner
from closeloop_common.tenants import TenantConfig
from closeloop_orchestrator.config import DEMO_TEAM, OrchestratorSettings

EWA = Owner(id="ewa", name="Ewa Zielińska", email="ewa@acme.example")


def settings() -> OrchestratorSettings:
    return OrchestratorSettings(
        environment="test",
        orchestrator_first_contact_sla_hours=48,
        orchestrator_key_account_sla_hours=24,
        orchestrator_key_accounts=["env-key-account"],
    )


def test_a_listed_tenant_gets_its_own_team_key_accounts_and_slas() -> None:
    own = TenantConfig(
        team=(EWA,),
        key_accounts=frozenset({"hurtownia-nowak"}),
        first_contact_sla_hours=12,
        key_account_sla_hours=2,
    )

    policy = settings().case_policy(own)

    assert policy.team == (EWA,)
    assert policy.key_accounts == frozenset({"hurtownia-nowak"})
    assert (policy.first_contact_sla, policy.key_account_sla) == (
        timedelta(hours=12),
        timedelta(hours=2),
    )


def test_what_a_tenant_leaves_out_comes_from_the_environment() -> None:
    policy = settings().case_policy(TenantConfig(team=(EWA,)))

    assert policy.team == (EWA,)
    assert policy.key_accounts == frozenset({"env-key-account"})
    assert (policy.first_contact_sla, policy.key_account_sla) == (
        timedelta(hours=48),
        timedelta(hours=24),
    )


def test_an_unlisted_tenant_gets_the_environment_policy() -> None:
    policy = settings().case_policy()

    assert policy.team == DEMO_TEAM
    assert policy.first_contact_sla == timedelta(hours=48)


def test_an_empty_key_account_list_overrides_the_environment_one() -> None:
    assert settings().case_policy(TenantConfig(key_accounts=frozenset())).key_accounts == set()
