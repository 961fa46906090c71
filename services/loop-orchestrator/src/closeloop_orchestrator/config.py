"""The orchestrator's settings, read from environment variables on top of `CommonSettings`.

A tenant's set-up (`domain/setup.py`: teams, calendars, SLA escalation, key accounts, case
rules) comes from the admin API when it stored one, else from `ORCHESTRATOR_SETUP_FILE`, else
from these settings and the tenant's entry in `TENANTS_FILE` (`default_setup`): one team of the
listed owners, wall-time deadlines of `ORCHESTRATOR_FIRST_CONTACT_SLA_HOURS` (key accounts
`ORCHESTRATOR_KEY_ACCOUNT_SLA_HOURS`), the process's defaults for the rest.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from closeloop_common.events import EMAIL_PATTERN, Owner
from closeloop_common.settings import CommonSettings
from closeloop_common.tenants import TenantConfig
from closeloop_orchestrator.domain.assignment import Member, Team
from closeloop_orchestrator.domain.case_rules import ProcessDefaults, RuleSet
from closeloop_orchestrator.domain.setup import Organisation, TenantSetup

DEMO_TEAM = (
    Owner(id="agnieszka", name="Agnieszka Wiśniewska", email="agnieszka.wisniewska@example.com"),
    Owner(id="tomasz", name="Tomasz Kowalczyk", email="tomasz.kowalczyk@example.com"),
    Owner(id="emma", name="Emma Clarke", email="emma.clarke@example.com"),
)
DEFAULT_TEAM_ID = "customer-care"


class OrchestratorSettings(CommonSettings):
    orchestrator_team: tuple[Owner, ...] = Field(
        DEMO_TEAM, min_length=1, description="JSON list of case owners: id, name, email"
    )
    orchestrator_team_email: str = Field(
        "customer-care@example.com",
        max_length=320,
        pattern=EMAIL_PATTERN,
        description="the default team's shared mailbox (cases waiting in its queue)",
    )
    orchestrator_first_contact_sla_hours: float = Field(48, gt=0, le=24 * 30)
    orchestrator_key_account_sla_hours: float = Field(24, gt=0, le=24 * 30)
    orchestrator_key_accounts: frozenset[str] = Field(
        frozenset(), description="JSON list of account ids"
    )
    orchestrator_setup_file: Path | None = Field(
        None,
        description="JSON or TOML file of tenants' set-ups ({tenants: {id: {organisation, "
        "rules}}}); re-read when it changes",
    )
    orchestrator_watch_interval_seconds: float = Field(
        0.5, gt=0, le=60, description="how often the SLA watcher looks for due timers"
    )
    orchestrator_watch_tick_seconds: float = Field(
        0.1,
        ge=0,
        le=10,
        description="the shortest sleep between two looks: timers due within it fire together, "
        "at most this much late, rather than one transaction each",
    )
    orchestrator_watch_batch: int = Field(
        1000, ge=1, le=50_000, description="due timers fired per transaction"
    )
    orchestrator_silence_interval_seconds: float = Field(
        30,
        gt=0,
        le=3600,
        description="how often the silence watcher looks for key contacts' unanswered "
        "invitations whose silence window has passed",
    )
    orchestrator_silence_batch: int = Field(
        500, ge=1, le=10_000, description="due invitations handled per transaction"
    )
    orchestrator_gauge_interval_seconds: float = Field(
        30, gt=0, le=3600, description="how often the open-case gauges are recounted"
    )
    orchestrator_impact_interval_seconds: float = Field(
        300,
        gt=0,
        le=86400,
        description="how often the loop's impact gauges (last 90 days, every tenant) are recounted",
    )
    orchestrator_scoring_url: str = Field(
        "http://127.0.0.1:8002",
        min_length=1,
        description="scoring's API: structural issues ask its what-if for their NPS impact, "
        "account review packs its figures",
    )
    orchestrator_scoring_timeout_seconds: float = Field(
        5, gt=0, le=60, description="how long a question to scoring (a what-if, a read) may take"
    )

    orchestrator_review_time_zone: str = Field(
        "UTC",
        description="the local days of an account review's quarter; set it to scoring's "
        "SCORING_TIME_ZONE, so both count the same days",
    )

    @field_validator("orchestrator_review_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def review_time_zone(self) -> ZoneInfo:
        return ZoneInfo(self.orchestrator_review_time_zone)

    def default_setup(self, tenant: TenantConfig | None = None) -> TenantSetup:
        """A tenant's set-up from these settings and its `TENANTS_FILE` entry."""
        own = tenant or TenantConfig()
        first_contact = own.first_contact_sla_hours or self.orchestrator_first_contact_sla_hours
        key_account = own.key_account_sla_hours or self.orchestrator_key_account_sla_hours
        process = ProcessDefaults()
        defaults = process.model_copy(
            update={
                name: getattr(process, name).model_copy(
                    update={
                        "first_contact_hours": first_contact,
                        "resolution_hours": (
                            None
                            if getattr(process, name).resolution_hours is None
                            else max(getattr(process, name).resolution_hours, first_contact)
                        ),
                    }
                )
                for name in ("detractor", "passive", "promoter")
            }
            | {"key_account_first_contact_hours": key_account}
        )
        team = Team(
            id=DEFAULT_TEAM_ID,
            name="Customer care",
            email=self.orchestrator_team_email,
            members=tuple(
                Member(id=o.id, name=o.name, email=o.email)
                for o in (own.team or self.orchestrator_team)
            ),
            queue=DEFAULT_TEAM_ID,
        )
        key_accounts = (
            self.orchestrator_key_accounts if own.key_accounts is None else own.key_accounts
        )
        return TenantSetup(
            organisation=Organisation(teams=(team,), key_accounts=key_accounts),
            rules=RuleSet.model_validate({"defaults": defaults.model_dump()}),
        )
