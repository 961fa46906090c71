"""A tenant's set-up: its teams and people, business calendars, SLA warnings and escalation, key
accounts, and its case rules, validated together. Pure.

`TenantSetup` is what the orchestrator decides with. It comes, per tenant, from the admin API
(stored, versioned), else from the set-up file (`ORCHESTRATOR_SETUP_FILE`), else from the
service's environment settings (one team, no business hours); the service layer picks
(`service_layer/setup_store.py`). Here it is only checked and turned into the domain's objects:

- `Organisation`: teams (members, lead, manager, queue, a shared mailbox), people outside teams
  (managers) found by the escalation chain and the account-owner mapping, the tenant's business
  calendar and the teams' own, the SLA policy, key accounts, the default team, and when silence
  opens a lack-of-response case (`silence.py`).
- The rules (`case_rules.RuleSet`) may name teams; `TenantSetup` refuses a rule naming a team
  that does not exist, or counting business hours where no calendar applies.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cached_property
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from closeloop_orchestrator.domain.assignment import Member, Team
from closeloop_orchestrator.domain.business_time import (
    BusinessCalendar,
    Clockwork,
    DaysOff,
    WallTime,
    calendar_of,
)
from closeloop_orchestrator.domain.case_rules import RuleSet
from closeloop_orchestrator.domain.silence import SilenceSpec
from closeloop_orchestrator.domain.sla import EscalationStep, SlaPolicy

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,49}$")]
MAX_TEAMS: Final = 200
MAX_PEOPLE: Final = 2_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalendarSpec(_Model):
    """Working hours per weekday in a time zone, with a country's public holidays and own days
    off: `{"time_zone": "Europe/Warsaw", "hours": {"mon": ["08:00-16:00"], ...},
    "holidays": "PL"}`. A weekday left out is not worked."""

    time_zone: str = Field(examples=["Europe/Warsaw"])
    hours: dict[Weekday, tuple[str, ...]]
    holidays: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 country")
    subdivision: str | None = Field(None, max_length=10)
    days_off: tuple[date, ...] = Field((), max_length=1000)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _builds(self) -> CalendarSpec:
        self.calendar()  # refuses bad hours, no working day, an unknown country
        return self

    def calendar(self) -> BusinessCalendar:
        return calendar_of(
            time_zone=self.time_zone,
            hours={day: list(ranges) for day, ranges in self.hours.items()},
            days_off=DaysOff(self.holidays, self.subdivision, frozenset(self.days_off)),
        )


class EscalationSpec(_Model):
    to: RoleName = Field(description="`team_lead`, `manager`, or a person's id")
    after_hours: float = Field(ge=0, le=24 * 30, description="after the breach, counted time")


class SlaSpec(_Model):
    warn_at: float = Field(0.75, gt=0, lt=1, description="the warning at this share of the time")
    escalation: tuple[EscalationSpec, ...] = Field(
        (
            EscalationSpec(to="team_lead", after_hours=4),
            EscalationSpec(to="manager", after_hours=24),
        ),
        max_length=10,
    )

    @model_validator(mode="after")
    def _ordered(self) -> SlaSpec:
        afters = [step.after_hours for step in self.escalation]
        if afters != sorted(afters):
            raise ValueError("escalation steps are listed in the order they fire")
        return self

    def policy(self) -> SlaPolicy:
        return self._policy

    @cached_property  # the spec is frozen; every case opened asks for its policy
    def _policy(self) -> SlaPolicy:
        return SlaPolicy(
            warn_at=self.warn_at,
            chain=tuple(
                EscalationStep(step.to, timedelta(hours=step.after_hours))
                for step in self.escalation
            ),
        )


class Organisation(_Model):
    """Who works the cases of a tenant, and when."""

    teams: tuple[Team, ...] = Field(min_length=1, max_length=MAX_TEAMS)
    default_team: str | None = Field(None, description="the rules' team when they name none")
    people: tuple[Member, ...] = Field(
        (), max_length=MAX_PEOPLE, description="managers and account owners outside the teams"
    )
    calendar: CalendarSpec | None = Field(None, description="business hours for every team")
    team_calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    sla: SlaSpec = SlaSpec()
    key_accounts: frozenset[str] = Field(frozenset(), max_length=100_000)
    silence: SilenceSpec = Field(
        SilenceSpec(),
        description="lack-of-response cases for key contacts of key accounts who stay silent",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Organisation:
        team_ids = [team.id for team in self.teams]
        if len(set(team_ids)) != len(team_ids):
            raise ValueError("team ids are unique")
        if self.default_team is not None and self.default_team not in team_ids:
            raise ValueError(f"the default team {self.default_team!r} is not a team")
        if self.silence.team_id is not None and self.silence.team_id not in team_ids:
            raise ValueError(f"silence.team_id {self.silence.team_id!r} is not a team")
        unknown = set(self.team_calendars) - set(team_ids)
        if unknown:
            raise ValueError(f"calendars of unknown teams: {sorted(unknown)}")
        people: dict[str, Member] = {}
        for member in (*self.people, *(m for team in self.teams for m in team.members)):
            known = people.setdefault(member.id, member)
            if known != member:
                raise ValueError(f"{member.id!r} is described twice, differently")
        for team in self.teams:
            if team.email is None:
                raise ValueError(
                    f"team {team.id}: give the team's shared mailbox (`email`): a case waiting "
                    "in its queue is answered from it"
                )
            if team.manager_id is not None and team.manager_id not in people:
                raise ValueError(f"team {team.id}: the manager {team.manager_id!r} is unknown")
        return self

    @cached_property
    def directory(self) -> dict[str, Member]:
        """Everyone by id: people outside teams, then members of the teams."""
        found = {member.id: member for member in self.people}
        for team in self.teams:
            for member in team.members:
                found.setdefault(member.id, member)
        return found

    def team(self, team_id: str | None) -> Team:
        """The named team, else the default team (the first listed when none is set)."""
        wanted = team_id or self.default_team or self.teams[0].id
        return next(team for team in self.teams if team.id == wanted)

    def has_team(self, team_id: str) -> bool:
        return any(team.id == team_id for team in self.teams)

    # Made once per organisation (it is frozen): a calendar is built from its specification
    # with the country's holidays, and a consumer batch asks for it once per case.
    @cached_property
    def _clocks(self) -> tuple[Clockwork, dict[str, Clockwork]]:
        own = WallTime() if self.calendar is None else self.calendar.calendar()
        return own, {team: spec.calendar() for team, spec in self.team_calendars.items()}

    def clock(self) -> Clockwork:
        """The tenant's business calendar, or wall time when it has none."""
        return self._clocks[0]

    def team_clocks(self) -> dict[str, Clockwork]:
        return dict(self._clocks[1])

    def team_of(self, member_id: str) -> Team | None:
        return next((t for t in self.teams if t.member(member_id) is not None), None)

    def holder(self, role: str, *, team: Team, owner_id: str | None) -> Member | None:
        """Who holds `role` for a case of `team` owned by `owner_id`: `owner`, `team_lead`,
        `manager`, or a person's id."""
        match role:
            case "owner":
                wanted = owner_id
            case "team_lead":
                wanted = team.lead_id
            case "manager":
                wanted = team.manager_id
            case _:
                wanted = role
        return None if wanted is None else self.directory.get(wanted)


class TenantSetup(_Model):
    """The organisation and the rules of one tenant, checked against each other."""

    organisation: Organisation
    rules: RuleSet = RuleSet()

    @model_validator(mode="after")
    def _rules_fit(self) -> TenantSetup:
        org = self.organisation
        named = [(rule.name, rule.then.team_id) for rule in self.rules.rules]
        named.append(("defaults", self.rules.defaults.team_id))
        for name, team_id in named:
            if team_id is not None and not org.has_team(team_id):
                raise ValueError(f"rule {name!r} names the unknown team {team_id!r}")
        business = [r for r in self.rules.rules if r.then.business_hours and r.then.open_case]
        for rule in business:
            team = org.team(rule.then.team_id or self.rules.defaults.team_id)
            if org.calendar is None and team.id not in org.team_calendars:
                raise ValueError(
                    f"rule {rule.name!r} counts business hours, but team {team.id!r} has no "
                    "calendar (set organisation.calendar or organisation.team_calendars)"
                )
        return self
