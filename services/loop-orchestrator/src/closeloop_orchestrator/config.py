"""The orchestrator's settings: the case team, first-contact SLAs and key accounts, read from
environment variables on top of `CommonSettings`, and the `CasePolicy` they make."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from closeloop_common.events import Owner
from closeloop_common.settings import CommonSettings
from closeloop_common.tenants import TenantConfig
from closeloop_orchestrator.domain.rules import CasePolicy

DEMO_TEAM = (
    Owner(id="agnieszka", name="Agnieszka Wiśniewska", email="agnieszka.wisniewska@example.com"),
    Owner(id="tomasz", name="Tomasz Kowalczyk", email="tomasz.kowalczyk@example.com"),
    Owner(id="emma", name="Emma Clarke", email="emma.clarke@example.com"),
)


class OrchestratorSettings(CommonSettings):
    orchestrator_team: tuple[Owner, ...] = Field(
        DEMO_TEAM, min_length=1, description="JSON list of case owners: id, name, email"
    )
    orchestrator_first_contact_sla_hours: float = Field(48, gt=0, le=24 * 30)
    orchestrator_key_account_sla_hours: float = Field(24, gt=0, le=24 * 30)
    orchestrator_key_accounts: frozenset[str] = Field(
        frozenset(), description="JSON list of account ids"
    )

    def case_policy(self, tenant: TenantConfig | None = None) -> CasePolicy:
        """A tenant's policy: its own settings (TENANTS_FILE) where given, these otherwise."""
        own = tenant or TenantConfig()
        first_contact = own.first_contact_sla_hours or self.orchestrator_first_contact_sla_hours
        key_account = own.key_account_sla_hours or self.orchestrator_key_account_sla_hours
        return CasePolicy(
            team=own.team or self.orchestrator_team,
            first_contact_sla=timedelta(hours=first_contact),
            key_account_sla=timedelta(hours=key_account),
            key_accounts=(
                self.orchestrator_key_accounts if own.key_accounts is None else own.key_accounts
            ),
        )
