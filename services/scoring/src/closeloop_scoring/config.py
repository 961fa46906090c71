"""Scoring's settings: environment variables on top of `CommonSettings`."""

from __future__ import annotations

from pydantic import Field

from closeloop_common.settings import CommonSettings


class ScoringSettings(CommonSettings):
    scoring_min_responses: int = Field(
        30,
        ge=1,
        le=100_000,
        description="below this many answers an NPS is flagged `insufficient`",
    )
