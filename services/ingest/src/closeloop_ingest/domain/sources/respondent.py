"""Who answered and under which account, segments and custom attributes, read from a tool's
document through the source's `FieldRefs` (JSONPath) with each kind's defaults (custom attributes
have none: only the configured paths are read), and the assembly of the canonical response. Pure;
every kind uses it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from closeloop_common.events import SEGMENT_ATTRIBUTES, SegmentAttribute
from closeloop_ingest.domain.responses import CanonicalResponse
from closeloop_ingest.domain.sources.base import (
    CustomerParts,
    FieldRefs,
    canonical,
    lookup_text,
    normalize_locale,
)

PartName = Literal[
    "customer_id", "customer_email", "customer_name", "locale", "account_id", SegmentAttribute
]
PartPaths = Mapping[PartName, Sequence[str]]
"""A kind's default JSONPaths for each respondent part, tried in order (the first giving text
wins); `FieldRefs` of the source (or form) replace a part's defaults."""
NO_DEFAULTS: PartPaths = {}


@dataclass(frozen=True, slots=True)
class Respondent:
    """Who answered and under which account, segments and custom attributes, as found in a
    payload."""

    customer: CustomerParts
    account_id: str | None
    segments: Mapping[SegmentAttribute, str]
    attributes: Mapping[str, str]


def find_respondent(
    document: Any, refs: FieldRefs, defaults: PartPaths, *, default_locale: str | None
) -> Respondent:
    """The respondent's parts from `refs` where given, else from the kind's `defaults`."""

    def part(name: PartName, ref: str | None) -> str | None:
        for path in (ref,) if ref else defaults.get(name, ()):
            if (text := lookup_text(document, path)) is not None:
                return text
        return None

    locale = normalize_locale(part("locale", refs.locale)) or normalize_locale(default_locale)
    customer = CustomerParts(
        customer_id=part("customer_id", refs.customer_id),
        email=part("customer_email", refs.customer_email),
        name=part("customer_name", refs.customer_name),
        locale=locale,
    )
    segments = {
        attribute: value
        for attribute in SEGMENT_ATTRIBUTES
        if (value := part(attribute, refs.segments.get(attribute))) is not None
    }
    attributes = {
        name: value
        for name, path in refs.attributes.items()
        if (value := lookup_text(document, path)) is not None
    }
    return Respondent(customer, part("account_id", refs.account_id), segments, attributes)


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
    segments: Mapping[SegmentAttribute, str],
    attributes: Mapping[str, str],
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
        "attributes": dict(attributes),
    }
    optional = {"account_id": account_id, "comment": comment, "updated_at": updated_at}
    fields.update({name: value for name, value in optional.items() if value is not None})
    return canonical(fields, at=at)
