"""A case's commands, each checked in itself: what an agent, a CRM or a correction asks. Pure.

A command that exists is well formed: its note is trimmed and present where it must be (every
command that changes a status, a reassignment, a reached contact; Claim excepted), at most 4,000
characters; its root-cause tags are normalised; its re-survey delay is 1..365 days; its times are
aware and in UTC. Anything else raises `InvalidCommand` (a `ValueError`, so an API answers 422)
when it is made, whatever the case's state. What each command does to a case, and in which
statuses it is accepted, is `lifecycle.apply`'s business.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from closeloop_common.events import Playbook

MAX_NOTE_CHARS: Final = 4_000
MAX_TAG_CHARS: Final = 50
MAX_ROOT_CAUSES: Final = 20
MIN_RESURVEY_DAYS: Final = 1
MAX_RESURVEY_DAYS: Final = 365
_TAG = re.compile(r"[\w\- ]+")
_SPACES = re.compile(r"\s+")


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class ContactChannel(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    SMS = "sms"
    CHAT = "chat"
    MEETING = "meeting"
    OTHER = "other"


class ContactOutcome(StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    LEFT_MESSAGE = "left_message"
    WRONG_CONTACT = "wrong_contact"
    REFUSED = "refused"


class ResolutionOutcome(StrEnum):
    SOLVED = "solved"
    COMPENSATED = "compensated"
    EXPLAINED = "explained"
    NOT_SOLVABLE = "not_solvable"
    CUSTOMER_UNREACHABLE = "customer_unreachable"


class LifecycleError(Exception):
    """A command that was not applied."""


class InvalidCommand(LifecycleError, ValueError):
    """A command malformed in itself (a missing note, a bad tag), whatever the case's state."""


def _aware(instant: datetime, what: str) -> datetime:
    if instant.tzinfo is None:
        raise InvalidCommand(f"{what} must be an aware datetime")
    return instant.astimezone(UTC)


def clean_note(note: str | None, *, required: bool) -> str | None:
    """The note trimmed; None when blank and optional. Blank and required, or too long: refused."""
    text = (note or "").strip()
    if not text:
        if required:
            raise InvalidCommand("a status change needs a note: what was done, what was agreed")
        return None
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidCommand(f"a note has at most {MAX_NOTE_CHARS} characters, got {len(text)}")
    return text


def normalise_tag(tag: str) -> str:
    """A root-cause tag as stored: trimmed, lower-case, inner whitespace as one space."""
    text = _SPACES.sub(" ", tag.strip()).lower()
    if not 1 <= len(text) <= MAX_TAG_CHARS:
        raise InvalidCommand(f"a root-cause tag has 1..{MAX_TAG_CHARS} characters: {tag!r}")
    if not _TAG.fullmatch(text):
        raise InvalidCommand(
            f"a root-cause tag has only letters, digits, '-', '_' and spaces: {tag!r}"
        )
    return text


def check_owner(owner_id: str | None) -> str | None:
    if owner_id is not None and not owner_id.strip():
        raise InvalidCommand("an owner id is not blank (None sends the case to its team's queue)")
    return owner_id


@dataclass(frozen=True, slots=True)
class Claim:
    owner_id: str
    note: str | None = None

    def __post_init__(self) -> None:
        if check_owner(self.owner_id) is None:
            raise InvalidCommand("a claim names its owner")
        object.__setattr__(self, "note", clean_note(self.note, required=False))


@dataclass(frozen=True, slots=True)
class Reassign:
    owner_id: str | None  # None: back to the team's queue
    note: str

    def __post_init__(self) -> None:
        check_owner(self.owner_id)
        object.__setattr__(self, "note", clean_note(self.note, required=True))


@dataclass(frozen=True, slots=True)
class LogContact:
    channel: ContactChannel
    outcome: ContactOutcome
    note: str | None = None  # required when the customer was reached: it changes the status

    def __post_init__(self) -> None:
        required = self.outcome == ContactOutcome.REACHED
        object.__setattr__(self, "note", clean_note(self.note, required=required))


@dataclass(frozen=True, slots=True)
class AddRootCauses:
    tags: Collection[str]  # normalised to a frozenset

    def __post_init__(self) -> None:
        if isinstance(self.tags, str):
            raise InvalidCommand("root causes are a collection of tags, not one string")
        tags = frozenset(normalise_tag(tag) for tag in self.tags)
        if not tags:
            raise InvalidCommand("name at least one root cause")
        if len(tags) > MAX_ROOT_CAUSES:
            raise InvalidCommand(f"a case has at most {MAX_ROOT_CAUSES} root causes")
        object.__setattr__(self, "tags", tags)


@dataclass(frozen=True, slots=True)
class Resolve:
    outcome: ResolutionOutcome
    note: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "note", clean_note(self.note, required=True))


@dataclass(frozen=True, slots=True)
class Close:
    note: str
    resurvey_after_days: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "note", clean_note(self.note, required=True))
        days = self.resurvey_after_days
        if days is not None and (
            isinstance(days, bool) or not MIN_RESURVEY_DAYS <= days <= MAX_RESURVEY_DAYS
        ):
            raise InvalidCommand(
                f"a re-survey is {MIN_RESURVEY_DAYS}..{MAX_RESURVEY_DAYS} days after closing"
            )


@dataclass(frozen=True, slots=True)
class Reopen:
    note: str
    resolution_due_at: datetime | None = None  # a new resolution deadline; else the old one

    def __post_init__(self) -> None:
        object.__setattr__(self, "note", clean_note(self.note, required=True))
        if self.resolution_due_at is not None:
            object.__setattr__(
                self, "resolution_due_at", _aware(self.resolution_due_at, "resolution_due_at")
            )


@dataclass(frozen=True, slots=True)
class Retype:
    """The plan of a corrected response: what kind of case it is now and its deadlines."""

    playbook: Playbook
    priority: Priority
    first_contact_due_at: datetime
    resolution_due_at: datetime | None
    note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "note", clean_note(self.note, required=False))
        object.__setattr__(
            self, "first_contact_due_at", _aware(self.first_contact_due_at, "first_contact_due_at")
        )
        if self.resolution_due_at is not None:
            object.__setattr__(
                self, "resolution_due_at", _aware(self.resolution_due_at, "resolution_due_at")
            )


Command = Claim | Reassign | LogContact | AddRootCauses | Resolve | Close | Reopen | Retype
