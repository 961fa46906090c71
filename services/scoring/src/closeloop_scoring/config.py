"""Scoring's settings: environment variables on top of `CommonSettings`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from closeloop_common.events import HEADLINE_NAME_PATTERN, AttributeName, SegmentFilter
from closeloop_common.identifiers import TENANT_ID_PATTERN
from closeloop_common.settings import CommonSettings
from closeloop_scoring.domain.health import HealthPolicy
from closeloop_scoring.domain.root_causes import ROOT_CAUSE_PREFIX, is_root_cause
from closeloop_scoring.domain.themes import DEFAULT_THEMES
from closeloop_scoring.domain.windows import WindowName

MAX_HEADLINES = 100


class Headline(BaseModel):
    """A segment and window whose NPS scoring watches: Prometheus gauges, and
    `nps.changed.v1` when it moves (`SCORING_HEADLINES`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str = Field(pattern=TENANT_ID_PATTERN)
    name: str = Field(pattern=HEADLINE_NAME_PATTERN, description="unique within the tenant")
    filters: dict[SegmentFilter, Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=dict, description="every answer matching all of these; none: all answers"
    )
    window: WindowName = Field("30d", description="a named window of `GET /v1/nps`")

    @property
    def definition(self) -> str:
        """What the figures depend on: a changed definition starts the headline afresh."""
        return json.dumps({"filters": self.filters, "window": self.window}, sort_keys=True)


_HEADLINES = TypeAdapter(list[Headline])


def checked_headlines(headlines: Sequence[Headline]) -> tuple[Headline, ...]:
    """At most `MAX_HEADLINES` (they are metric labels), each (tenant, name) once."""
    if len(headlines) > MAX_HEADLINES:
        raise ValueError(f"at most {MAX_HEADLINES} headlines, got {len(headlines)}")
    seen: set[tuple[str, str]] = set()
    for headline in headlines:
        key = (headline.tenant, headline.name)
        if key in seen:
            raise ValueError(f"headline {headline.name!r} of tenant {headline.tenant!r} is twice")
        seen.add(key)
    return tuple(headlines)


class ScoringSettings(CommonSettings):
    scoring_min_responses: int = Field(
        30,
        ge=1,
        le=100_000,
        description="below this many answers an NPS is flagged `insufficient`",
    )
    scoring_time_zone: str = Field(
        "UTC",
        description="IANA time zone whose local days windows and trends are made of (e.g. "
        "Europe/Warsaw); the stored days depend on it, so changing it needs a rebuild",
    )
    scoring_themes_file: Path | None = Field(
        None,
        description="JSON object of theme name -> keywords (Polish or English, any inflection); "
        "the built-in dictionary when unset. Applies to responses counted from then on",
    )
    scoring_attributes: tuple[AttributeName, ...] = Field(
        (),
        max_length=10,
        description='JSON list of the custom attributes to score (e.g. ["plan", "tier"]): '
        "filters, breakdowns and rollups cover these only, so the number of cells stays "
        "bounded; others are ignored. Applies to responses counted from then on",
    )
    scoring_headlines: tuple[Headline, ...] = Field(
        (),
        description='JSON list of headline segments: [{"tenant", "name", "filters": {survey|'
        'account|product|region|channel|touchpoint: value}, "window"}]; at most 100',
    )
    scoring_headlines_file: Path | None = Field(
        None, description="a JSON file of the same list, instead of SCORING_HEADLINES"
    )
    scoring_headline_interval_seconds: float = Field(
        30, ge=1, le=3600, description="how often the headlines' NPS is computed"
    )
    scoring_headline_min_change: float = Field(
        1.0,
        ge=0,
        le=200,
        description="NPS points a headline must move from its last event to publish another "
        "(0: any change)",
    )
    scoring_headline_debounce_seconds: float = Field(
        300, ge=0, le=7 * 86400, description="at most one event per headline per this long"
    )

    scoring_health_risk_nps: float = Field(
        0.0,
        ge=-100,
        le=100,
        description="account health: an account's NPS below this is a risk",
    )
    scoring_health_min_responses: int = Field(
        5,
        ge=1,
        le=100_000,
        description="account health: fewer answers than this are too few to judge (unknown)",
    )
    scoring_health_min_response_rate: float = Field(
        0.2,
        ge=0,
        le=1,
        description="account health: answers over invitations below this is a risk (0: never); "
        "judged only when invitations are known",
    )
    scoring_health_large_account_weight: float | None = Field(
        None,
        gt=0,
        le=1e12,
        description="account health: from this revenue weight up, an NPS whose interval spans "
        "the risk threshold is a risk, not unknown (unset: off)",
    )

    @field_validator("scoring_attributes")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each attribute is named once")
        return value

    @field_validator("scoring_headlines")
    @classmethod
    def _headlines_once_each(cls, value: tuple[Headline, ...]) -> tuple[Headline, ...]:
        return checked_headlines(value)

    @model_validator(mode="after")
    def _one_headline_source(self) -> ScoringSettings:
        if self.scoring_headlines and self.scoring_headlines_file is not None:
            raise ValueError("set SCORING_HEADLINES or SCORING_HEADLINES_FILE, not both")
        return self

    def headlines(self) -> tuple[Headline, ...]:
        """The headline segments: the file's, checked, else SCORING_HEADLINES."""
        if self.scoring_headlines_file is None:
            return self.scoring_headlines
        path = self.scoring_headlines_file
        try:
            return checked_headlines(_HEADLINES.validate_json(path.read_bytes()))
        except ValueError as exc:  # pydantic's ValidationError is one
            raise ValueError(f"{path}: {exc}") from exc

    @field_validator("scoring_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def health_policy(self) -> HealthPolicy:
        """When an account is safe or at risk (`SCORING_HEALTH_*`)."""
        return HealthPolicy(
            risk_nps=self.scoring_health_risk_nps,
            min_responses=self.scoring_health_min_responses,
            min_response_rate=self.scoring_health_min_response_rate,
            large_account_weight=self.scoring_health_large_account_weight,
        )

    @property
    def time_zone(self) -> ZoneInfo:
        return ZoneInfo(self.scoring_time_zone)

    def themes(self) -> Mapping[str, tuple[str, ...]]:
        """The theme dictionary: the file's, checked, else the built-in one."""
        if self.scoring_themes_file is None:
            return DEFAULT_THEMES
        loaded = json.loads(self.scoring_themes_file.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict) or not loaded:
            raise ValueError(f"{self.scoring_themes_file}: expected a JSON object of themes")
        themes: dict[str, tuple[str, ...]] = {}
        for name, keywords in loaded.items():
            if not (1 <= len(name) <= 100) or not isinstance(keywords, list) or not keywords:
                raise ValueError(f"{self.scoring_themes_file}: theme {name!r} needs keywords")
            if is_root_cause(name):
                raise ValueError(
                    f"{self.scoring_themes_file}: theme {name!r}: names starting with "
                    f"{ROOT_CAUSE_PREFIX!r} are the root causes of cases"
                )
            if not all(isinstance(k, str) and k.strip() for k in keywords):
                raise ValueError(f"{self.scoring_themes_file}: theme {name!r}: keywords are text")
            themes[name] = tuple(keywords)
        return themes
