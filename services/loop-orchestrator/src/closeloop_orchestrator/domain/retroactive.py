"""Retroactive rules: which past responses a new or changed rule set would open a case for. Pure.

The commercial tools apply a rule only to what arrives after it; here a rule can be run over the
responses since a date. `retroactive` lists the responses answered at or after `since` whose case
does not exist yet and that the rules would open one for, oldest first, with each one's
`Decision`, and counts the others by why they are left out (before `since`, a case exists, a rule
says no case, another rule decides). The dry run shows that plan; the real run opens those cases,
each with `case_rules.evaluate` at the moment it is opened (deadlines count from then, not from
the answer: the team learns of the case now). Opening only cases that do not exist yet, keyed by
the response's case id, makes a repeated run open nothing new.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from closeloop_orchestrator.domain.case_rules import Answer, Decision, RuleSet, decide


@dataclass(frozen=True, slots=True)
class RetroItem:
    response_id: str
    answered_at: datetime
    decision: Decision


@dataclass(frozen=True, slots=True)
class RetroPlan:
    """What running the rules over past responses would do. `would_open` lists the responses
    that get a case (oldest first); the counts say why the others do not."""

    since: datetime
    would_open: tuple[RetroItem, ...]
    already_have_case: int
    no_case_by_rule: int
    other_rule: int
    before_since: int


def retroactive(
    ruleset: RuleSet,
    responses: Iterable[Answer],
    existing_case_response_ids: Collection[str],
    since: datetime,
    *,
    key_accounts: Collection[str] = frozenset(),
    rule: str | None = None,
) -> RetroPlan:
    """Which responses answered at or after `since` would open a case that does not exist yet.
    With `rule`, only those that rule decides (a new rule run on its own). A response listed
    twice (received, then corrected) counts once, as its last listed version."""
    if since.tzinfo is None:
        raise ValueError("since is an aware datetime")
    latest: dict[str, Answer] = {}
    for response in responses:
        latest[response.response_id] = response
    wanted = None if rule is None else rule.casefold()
    items: list[RetroItem] = []
    existing = before = no_case = other = 0
    for response in latest.values():
        if response.answered_at < since:
            before += 1
        elif response.response_id in existing_case_response_ids:
            existing += 1
        elif (decision := decide(ruleset, response, key_accounts=key_accounts)) is None:
            no_case += 1
        elif wanted is not None and (decision.rule or "").casefold() != wanted:
            other += 1
        else:
            items.append(RetroItem(response.response_id, response.answered_at, decision))
    items.sort(key=lambda item: (item.answered_at, item.response_id))
    return RetroPlan(
        since=since,
        would_open=tuple(items),
        already_have_case=existing,
        no_case_by_rule=no_case,
        other_rule=other,
        before_since=before,
    )
