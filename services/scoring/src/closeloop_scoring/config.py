"""Scoring's settings: environment variables on top of `CommonSettings`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from closeloop_common.settings import CommonSettings
from closeloop_scoring.domain.themes import DEFAULT_THEMES


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

    @field_validator("scoring_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

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
            if not all(isinstance(k, str) and k.strip() for k in keywords):
                raise ValueError(f"{self.scoring_themes_file}: theme {name!r}: keywords are text")
            themes[name] = tuple(keywords)
        return themes
