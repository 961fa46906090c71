"""Input PostgreSQL cannot store is refused where it enters, as a validation error, not a 500.

Two kinds of input pass ordinary validation and then fail in the database or on the way to it:
- a NUL character (U+0000) in a string: PostgreSQL's `text` and `jsonb` cannot hold it;
- an aware datetime whose instant lies outside years 1-9999 once converted to UTC
  (`0001-01-01T00:00:00+14:00`, `9999-12-31T23:59:59-14:00`): the conversion that storing it as
  `timestamptz` and comparing it both need overflows. Every instant that does fit is inside
  PostgreSQL's timestamptz range (4713 BC to 294276 AD).

Where each is checked, once for every service:
- `nul_locations` finds NUL characters anywhere in decoded JSON (keys too). The HTTP shell
  (`web.create_app`) applies it to every request's path parameters, query parameters and JSON
  body; `events.decode_event` to every record from Kafka.
- `Instant` is the datetime type of every contract and request model: an aware datetime whose
  instant fits in UTC. Its JSON Schema is that of `AwareDatetime`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime
from pydantic_core import PydanticCustomError

NUL = "\x00"
NUL_CHARACTER = "nul_character"  # the error `kind` a client can branch on
NUL_MESSAGE = "Text must not contain the NUL character (U+0000)"
DATETIME_OUT_OF_RANGE = "datetime_out_of_range"

Location = tuple[str | int, ...]


def may_hold_nul(raw: bytes) -> bool:
    """False when JSON text certainly decodes to no NUL character: a cheap test on the bytes.

    In UTF-8 JSON a NUL can only be written as the escape `\\u0000` (a raw 0x00 byte is invalid
    JSON); JSON in UTF-16 or UTF-32, which the parser also accepts, has 0x00 bytes everywhere
    and always gets the full search."""
    return b"\\u0000" in raw or b"\x00" in raw


def nul_locations(document: Any) -> list[Location]:
    """Where strings in decoded JSON (dicts, lists, strings) contain a NUL, in document order.

    A NUL in a key is reported at that key. Iterative, so the deepest document the JSON parser
    accepts cannot exhaust the stack here."""
    found: list[Location] = []
    pending: list[tuple[Location, Any]] = [((), document)]
    while pending:
        at, value = pending.pop()
        if isinstance(value, str):
            if NUL in value:
                found.append(at)
        elif isinstance(value, Mapping):
            # A key holding a NUL stands for itself (as if its value were NUL), so it is reported
            # at its place and its value is not searched as well.
            children = [
                ((*at, key), NUL if isinstance(key, str) and NUL in key else item)
                for key, item in value.items()
            ]
            pending.extend(reversed(children))
        elif isinstance(value, list):
            pending.extend(reversed([((*at, i), item) for i, item in enumerate(value)]))
    return found


def _fits_in_utc(value: datetime) -> datetime:
    # Only the first and the last year can leave the range once the offset is applied: this
    # runs for every datetime of every event consumed, so the common case costs one comparison.
    if 1 < value.year < 9999:
        return value
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            DATETIME_OUT_OF_RANGE,
            "The instant must lie between years 1 and 9999 in UTC",
        ) from None
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_fits_in_utc)]
"""An aware datetime whose instant can be converted to UTC, so it can be stored and compared."""
