"""Who answered and under which account and segments, read from a tool's document through the
source's `FieldRefs` (JSONPath) with each kind's defaults, and the assembly of the canonical
response. Pure; shared by the kinds that fetch from an API and the configuration-only kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from closeloop_ingest.domain.responses import CanonicalResponse
from closeloop_ingest.domain.sources.base import (
    CustomerParts,
    FieldRefs,
    canonical,
    lookup_text,
    normalize_locale,
)


@dataclass(frozen=True, slots=True)
class DefaultRefs:
    """A kind's JSONPath defaults for the refs a source leaves unset; each field is tried in
    order and the first that gives text wins."""

    customer_id: Sequence[str] = ()
    customer_email: Sequence[str] = ()
    customer_name: Sequence[str] = ()
    locale: Sequence[str] = ()
    account_id: Sequence[str] = ()
    segments: Mapping[str, str] | None = None


def first_text(document: Any, own: str | None, defaults: Sequence[str] = ()) -> str | None:
    """The text `own` selects when the source set it, else the first default that gives text."""
    if own is not None:
        return lookup_text(document, own)
    for path in defaults:
        if (text := lookup_text(document, path)) is not None:
            return text
    return None


def respondent(
    document: Any,
    refs: FieldRefs,
    defaults: DefaultRefs,
    *,
    default_locale: str | None,
    name: str | None = None,
) -> CustomerParts:
    """The respondent's parts; `name` is a kind's own composition, used when no ref gives one."""
    locale = first_text(document, refs.locale, defaults.locale)
    return CustomerParts(
        customer_id=first_text(document, refs.customer_id, defaults.customer_id),
        email=first_text(document, refs.customer_email, defaults.customer_email),
        name=first_text(document, refs.customer_name, defaults.customer_name) or name,
        locale=normalize_locale(locale) or normalize_locale(default_locale),
    )


def account_of(document: Any, refs: FieldRefs, defaults: DefaultRefs) -> str | None:
    return first_text(document, refs.account_id, defaults.account_id)


def segments_of(document: Any, refs: FieldRefs, defaults: DefaultRefs) -> dict[str, str]:
    """Segment attribute -> value, from the source's refs or else the kind's defaults."""
    paths: Mapping[str, str] = defaults.segments or {}
    if refs.segments:
        paths = {str(attribute): path for attribute, path in refs.segments.items()}
    found = {attribute: lookup_text(document, path) for attribute, path in paths.items()}
    return {attribute: value for attribute, value in found.items() if value is not None}


def assemble(
    *,
    response_id: str,
    survey_id: str,
    customer: CustomerParts,
    account_id: str | None,
    score: int,
    comment: str | None,
    answered_at: datetime | str | int | float,
    updated_at: datetime | str | int | float | None,
    segments: Mapping[str, str],
    at: Mapping[str, str],
) -> CanonicalResponse:
    """Validate the parts into a `CanonicalResponse`; `at` maps canonical fields to where in the
    payload they came from, for the `InvalidPayload` that names a bad one."""
    fields: dict[str, Any] = {
        "response_id": response_id,
        "survey_id": survey_id,
        "customer": customer.customer_json(response_id),
        "score": score,
        "answered_at": answered_at,
        "segments": dict(segments),
    }
    optional = {"account_id": account_id, "comment": comment, "updated_at": updated_at}
    fields.update({name: value for name, value in optional.items() if value is not None})
    return canonical(fields, at=at)
