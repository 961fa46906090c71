"""Every source kind's adapter, by kind: what the ingest routes dispatch a delivery to."""

from __future__ import annotations

from closeloop_ingest.domain.sources import (
    custom,
    delighted,
    formbricks,
    qualtrics,
    standard,
    surveymonkey,
    tally,
    typeform,
)
from closeloop_ingest.domain.sources.base import SourceAdapter

ADAPTERS: dict[str, SourceAdapter] = {
    "typeform": typeform.ADAPTER,
    "delighted": delighted.ADAPTER,
    "formbricks": formbricks.ADAPTER,
    "tally": tally.ADAPTER,
    "standard": standard.ADAPTER,
    "surveymonkey": surveymonkey.ADAPTER,
    "qualtrics": qualtrics.ADAPTER,
    "custom": custom.ADAPTER,
}
