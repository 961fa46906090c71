"""Scoring's settings: environment variables on top of `CommonSettings` (none of its own yet)."""

from __future__ import annotations

from closeloop_common.settings import CommonSettings


class ScoringSettings(CommonSettings):
    pass
