"""Root causes: what the agents who followed a response up found to be its real causes. Pure.

The loop orchestrator publishes `case.updated.v1` once per accepted case command, carrying the
case's version (opened = 1, each change one more) and the full, normalised set of its root-cause
tags after the change. Scoring keeps, per response, the tags of the highest case version it has
seen (`RootCauses`) and counts them as drivers beside the comment themes: a tag is the theme
`rc:<tag>` of the response's cell, day and category (see `Deltas.count` and `Deltas.recause`),
so a driver's shares and NPS impact are computed the same way for both.

`supersede` is the rule that makes the handler idempotent without an inbox, as for responses:
a case version applies only if it is higher than the one stored, so a redelivery, a replay or an
older version arriving late (case events of one customer share a partition, but a replay or a
rebalance can still bring them late relative to other events) changes nothing. Only the set of
tags counts: a higher version with the same tags advances the stored version and changes no count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ROOT_CAUSE_PREFIX = "rc:"
"""Themes named so are root causes; a comment theme may not start with it (see `config.py`)."""


def root_cause_theme(tag: str) -> str:
    """The theme a root-cause tag is counted as: "billing error" -> "rc:billing error"."""
    return f"{ROOT_CAUSE_PREFIX}{tag}"


def is_root_cause(theme: str) -> bool:
    return theme.startswith(ROOT_CAUSE_PREFIX)


@dataclass(frozen=True, slots=True)
class RootCauses:
    """The root-cause tags of a response's case as of one case version."""

    response_id: str
    case_version: int
    tags: frozenset[str]


def supersede(stored: RootCauses | None, new: RootCauses) -> RootCauses | None:
    """What to store instead of `stored` once `new` arrived; None if nothing changes."""
    if stored is None or new.case_version > stored.case_version:
        return new
    return None


def latest(stored: RootCauses | None, arrived: Iterable[RootCauses]) -> RootCauses | None:
    """What is stored after `arrived` over `stored`: the highest case version, whatever the
    order (None: nothing was stored and nothing arrived)."""
    current = stored
    for found in arrived:
        after = supersede(current, found)
        if after is not None:
            current = after
    return current
