"""Who owns a new case: teams, their members, and the assignment strategies a rule names. Pure.

`assign(strategies, team=..., case=..., workload=...)` tries the rule's strategies in order; the
first that finds a present owner decides. When none does, the case goes to the team's queue (no
owner) and waits to be claimed. The result says which strategy decided and why, and what the
others found, so the case's history can tell an agent why a case is theirs.

Strategies:
- `account_owner`: the owner mapped to the case's account (`Workload.account_owners`, kept over
  the API as a CRM would sync it). The owner may sit in another team (an account manager in
  sales while the rule names the support team): they are looked up in `Workload.directory`
  first, then in the team.
- `round_robin`: the team's present members in the team's order take turns. The team keeps one
  counter of the turns given (`Workload.round_robin_counter`); turn `c` goes to present member
  `c mod n`, and the result carries the counter to store (`c + 1`). Over k·n consecutive turns
  with the same n present members each gets exactly k. When someone comes back or goes away,
  the rotation continues over the new list from the same counter: fair again from there on.
- `least_loaded`: the present member with the fewest open cases (`Workload.open_cases`; missing
  means none); ties go to the one listed first in the team, so the same input gives the same
  owner.
- `language_match`: present members who speak the customer's language, least loaded first (ties
  as above). The customer's language is Polish when the comment reads as Polish, else the
  primary subtag of the customer's locale (`pl-PL` -> `pl`); with neither, it cannot decide.

Why the comment wins over the locale: a locale is often the survey tool's default, while a
customer who writes in Polish wants to be called back in Polish. The detection is deliberately
small, and it only tells Polish from not-Polish (`reads_as_polish`): a letter only Polish
uses among the major European languages (ą ć ę ł ń ś ź ż; not `ó`, which Spanish and
Hungarian have), or at least two distinct common Polish words, which catches comments typed
without diacritics ("nie jest dobrze, obsluga byla slaba"). Two words, not one, because a
single short word may be a name or an English word (`ale`). Other languages come only from the
locale.

Owners marked away are skipped by every strategy, the account owner included: an away owner's
account goes to the next strategy rather than waiting until they are back.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from closeloop_common.events import EMAIL_PATTERN, Owner

LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}$"  # read in lower case
Language = Annotated[str, StringConstraints(to_lower=True, pattern=LANGUAGE_PATTERN)]
MemberId = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class AssignmentStrategy(StrEnum):
    ACCOUNT_OWNER = "account_owner"
    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"
    LANGUAGE_MATCH = "language_match"


class Member(BaseModel):
    """Someone who can own cases. `lead` marks a team lead (for the escalation chain)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: MemberId
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=320, pattern=EMAIL_PATTERN)
    languages: tuple[Language, ...] = ()
    away: bool = False
    lead: bool = False

    def owner(self) -> Owner:
        """The member as a case's owner on the wire."""
        return Owner(id=self.id, name=self.name, email=self.email)


class Team(BaseModel):
    """Members in the order round robin and ties follow, the lead and manager escalations go
    to (the lead is a member; the manager may be outside the team), and the queue of cases
    nobody was assigned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: MemberId
    name: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(
        None,
        max_length=320,
        pattern=EMAIL_PATTERN,
        description="the team's shared mailbox: who answers for a case waiting in its queue",
    )
    members: tuple[Member, ...] = Field(default=(), max_length=500)
    lead_id: MemberId | None = None
    manager_id: MemberId | None = None
    queue: str = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _consistent(self) -> Team:
        ids = [member.id for member in self.members]
        if len(set(ids)) != len(ids):
            doubled = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"team {self.id}: members listed twice: {doubled}")
        if self.lead_id is not None and self.lead_id not in ids:
            raise ValueError(f"team {self.id}: the lead {self.lead_id!r} is not a member")
        return self

    def queue_owner(self) -> Owner:
        """Who answers for a case waiting in the queue: the team, from its shared mailbox."""
        if self.email is None:
            raise ValueError(f"team {self.id} has no shared mailbox for its queue")
        return Owner(id=f"queue:{self.queue}", name=self.name or self.id, email=self.email)

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)

    def present(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if not m.away)

    def escalation_chain(self, owner_id: str | None) -> tuple[str, ...]:
        """Who hears of a late case, in order: owner, team lead, manager (each once, if any)."""
        chain: list[str] = []
        for who in (owner_id, self.lead_id, self.manager_id):
            if who is not None and who not in chain:
                chain.append(who)
        return tuple(chain)


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What assignment looks at in a case."""

    account_id: str | None = None
    locale: str | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """The state assignment reads (the service loads it; nothing here queries anything)."""

    account_owners: Mapping[str, str] = field(default_factory=dict)
    open_cases: Mapping[str, int] = field(default_factory=dict)
    round_robin_counter: int = 0
    directory: Mapping[str, Member] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.round_robin_counter < 0:
            raise ValueError("a round-robin counter counts turns given: it is not negative")


@dataclass(frozen=True, slots=True)
class Assignment:
    """The owner (None: the team's queue), the strategy that decided (None for the queue), why,
    what the strategies tried before it found, and the team's round-robin counter to store."""

    owner: Member | None
    team_id: str
    queue: str | None
    strategy: AssignmentStrategy | None
    reason: str
    tried: tuple[str, ...]
    round_robin_counter: int


@dataclass(frozen=True, slots=True)
class _Found:
    member: Member | None
    reason: str


def assign(
    strategies: Sequence[AssignmentStrategy],
    *,
    team: Team,
    case: CaseFacts,
    workload: Workload,
) -> Assignment:
    """The first strategy that finds a present owner decides; nobody fits: the team's queue."""
    tried: list[str] = []
    for strategy in strategies:
        found = _STRATEGIES[strategy](team, case, workload)
        if found.member is not None:
            advanced = strategy is AssignmentStrategy.ROUND_ROBIN
            return Assignment(
                owner=found.member,
                team_id=team.id,
                queue=None,
                strategy=strategy,
                reason=found.reason,
                tried=tuple(tried),
                round_robin_counter=workload.round_robin_counter + int(advanced),
            )
        tried.append(f"{strategy.value}: {found.reason}")
    return Assignment(
        owner=None,
        team_id=team.id,
        queue=team.queue,
        strategy=None,
        reason=f"nobody fits: to the queue {team.queue!r} of team {team.id!r}",
        tried=tuple(tried),
        round_robin_counter=workload.round_robin_counter,
    )


def by_account_owner(team: Team, case: CaseFacts, workload: Workload) -> _Found:
    if case.account_id is None:
        return _Found(None, "the case has no account")
    owner_id = workload.account_owners.get(case.account_id)
    if owner_id is None:
        return _Found(None, f"no owner mapped for account {case.account_id!r}")
    member = workload.directory.get(owner_id) or team.member(owner_id)
    if member is None:
        return _Found(None, f"account owner {owner_id!r} is not a known member")
    if member.away:
        return _Found(None, f"account owner {owner_id!r} is away")
    return _Found(member, f"owns account {case.account_id!r}")


def by_round_robin(team: Team, case: CaseFacts, workload: Workload) -> _Found:
    present = team.present()
    if not present:
        return _Found(None, f"nobody in team {team.id!r} is present")
    turn = workload.round_robin_counter
    member = present[turn % len(present)]
    return _Found(member, f"turn {turn} of team {team.id!r}, {len(present)} present")


def by_least_loaded(team: Team, case: CaseFacts, workload: Workload) -> _Found:
    return _least_loaded(team.present(), workload, among=f"team {team.id!r}")


def by_language(team: Team, case: CaseFacts, workload: Workload) -> _Found:
    language, source = customer_language(case)
    if language is None:
        return _Found(None, "the customer's language is unknown (no locale, no Polish comment)")
    speakers = tuple(m for m in team.present() if language in m.languages)
    if not speakers:
        return _Found(None, f"nobody present in team {team.id!r} speaks {language!r}")
    found = _least_loaded(speakers, workload, among=f"{language!r} speakers")
    return _Found(found.member, f"speaks {language!r} ({source}); {found.reason}")


def _least_loaded(candidates: Sequence[Member], workload: Workload, *, among: str) -> _Found:
    if not candidates:
        return _Found(None, f"nobody in {among} is present")
    # min() keeps the first of equals: ties go to the member listed first.
    member = min(candidates, key=lambda m: workload.open_cases.get(m.id, 0))
    load = workload.open_cases.get(member.id, 0)
    return _Found(member, f"fewest open cases among {among} ({load})")


_STRATEGIES: Final = {
    AssignmentStrategy.ACCOUNT_OWNER: by_account_owner,
    AssignmentStrategy.ROUND_ROBIN: by_round_robin,
    AssignmentStrategy.LEAST_LOADED: by_least_loaded,
    AssignmentStrategy.LANGUAGE_MATCH: by_language,
}

# --- language -----------------------------------------------------------------------------------

_POLISH_LETTERS: Final = frozenset("ąćęłńśźż")
# Frequent Polish words as typed without diacritics (those with a Polish-only letter are caught by
# the letter already; `ó` is not one, so such words are listed as written too).
_POLISH_WORDS: Final = frozenset(
    {
        "nie", "jest", "sie", "ze", "bardzo", "ale", "czy", "jak", "dla", "mam", "bylo",
        "byla", "juz", "tez", "moze", "jestem", "dziekuje", "prosze", "obsluga", "polecam",
        "zamowienie", "zamówienie", "tylko", "bardziej", "dlaczego", "kiedy", "gdzie", "przez",
        "oraz", "jednak", "wszystko", "wiec", "dobrze", "zle", "dostawa", "który", "ktory",
    }
)  # fmt: skip
_WORD: Final = re.compile(r"\w+")


def reads_as_polish(comment: str | None) -> bool:
    """Whether a comment reads as Polish: a Polish-only letter, or two common Polish words."""
    if not comment:
        return False
    text = unicodedata.normalize("NFC", comment).lower()
    if any(letter in _POLISH_LETTERS for letter in text):
        return True
    words = {word for word in _WORD.findall(text) if word in _POLISH_WORDS}
    return len(words) >= 2


def customer_language(case: CaseFacts) -> tuple[str | None, str]:
    """The customer's language and where it came from: a Polish comment, else the locale."""
    if reads_as_polish(case.comment):
        return "pl", "the comment reads as Polish"
    if case.locale:
        return case.locale.split("-", 1)[0].lower(), f"locale {case.locale!r}"
    return None, "unknown"
