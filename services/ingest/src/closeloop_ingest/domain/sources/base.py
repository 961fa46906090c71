"""What every survey-tool source has in common: the delivery as it arrived, the source's
definition (kind, secrets, where fields come from), what parsing a delivery yields, and the errors
a delivery is refused with. Pure: no I/O.

A source *kind* (Typeform, Delighted, ...) is one module exporting an object that follows
`SourceAdapter`: `verify` checks the tool's signature over the raw bytes (never re-serialised),
`parse` turns the payload into canonical responses (or ids to fetch later, or "ignored").
Kinds whose webhook carries ids only (SurveyMonkey, Qualtrics) also follow `FetchingAdapter`.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, Protocol, Self

import jsonpath
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from closeloop_common.events import MAX_ATTRIBUTES, AttributeName, SegmentAttribute
from closeloop_common.identifiers import TENANT_ID_PATTERN
from closeloop_ingest.domain.responses import CanonicalResponse

SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Kind = Literal[
    "typeform",
    "delighted",
    "formbricks",
    "tally",
    "standard",
    "surveymonkey",
    "qualtrics",
    "custom",
]
DEFAULT_TOLERANCE_SECONDS = 300

# ---------------------------------------------------------------------------------------------
# The delivery


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook request as it arrived: the raw body, headers with lower-case names, the media
    type of `Content-Type` (lower case, no parameters) and when it arrived."""

    body: bytes
    headers: Mapping[str, str]
    content_type: str
    received_at: datetime

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON; `InvalidPayload` (at `body`) when it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise InvalidPayload("body", f"not valid JSON: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Errors: each is one HTTP status and one `reason` label of the ingest metrics.


class DeliveryRejected(Exception):
    status: ClassVar[int] = 400
    reason: str = "rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadSignature(DeliveryRejected):
    """401: the signature is missing, malformed, wrong, or its timestamp is out of tolerance."""

    status = 401

    def __init__(
        self,
        reason: Literal["signature_missing", "signature_invalid", "timestamp_out_of_tolerance"],
        detail: str,
    ) -> None:
        super().__init__(detail)
        self.reason = reason


class UnsupportedContentType(DeliveryRejected):
    """415: the tool posts JSON (or form fields, Qualtrics) and this is something else."""

    status = 415
    reason = "unsupported_content_type"


class InvalidPayload(DeliveryRejected):
    """422: the payload is not what the tool documents, or the response in it is not valid.
    `field` names where, as a dotted path into the payload (`form_response.answers[2].number`)
    or a canonical field name (`score`)."""

    status = 422
    reason = "invalid_payload"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


# ---------------------------------------------------------------------------------------------
# The source's definition (what `PUT /v1/sources/{name}` and the sources file give)


class Definition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


JsonPath = Annotated[str, Field(min_length=1, max_length=500)]


class FieldRefs(Definition):
    """Where a response's parts are in a tool's payload, for one form (or every form).

    `nps_question` and `comment_question` name a question as the tool identifies it (Typeform's
    field `ref` or `id`, Tally's field `key`, Formbricks' question id, ...); without them the
    adapter takes the question the tool marks as NPS (or a 0-10 opinion scale) and the first
    long-text answer. The other refs are JSONPath expressions into the payload (RFC 9535 syntax,
    `$.form_response.hidden.customer_id`); an adapter has sensible defaults for each, except
    for `attributes` (custom attribute name -> path), which are read only where configured."""

    nps_question: str | None = Field(None, max_length=200)
    comment_question: str | None = Field(None, max_length=200)
    survey_id: str | None = Field(None, max_length=500)
    customer_id: str | None = Field(None, max_length=500)
    customer_email: str | None = Field(None, max_length=500)
    customer_name: str | None = Field(None, max_length=500)
    locale: str | None = Field(None, max_length=500)
    account_id: str | None = Field(None, max_length=500)
    segments: dict[SegmentAttribute, str] = Field(default_factory=dict)
    attributes: dict[AttributeName, JsonPath] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        description="custom attributes: name -> JSONPath, e.g. "
        '{"plan": "$.form_response.hidden.plan"}; a form\'s own add to (or replace, name by '
        "name) the source's",
    )


class CustomFields(Definition):
    """A configuration-only source: JSONPath expressions for every canonical field."""

    response_id: str = Field(max_length=500)
    score: str = Field(max_length=500)
    comment: str | None = Field(None, max_length=500)
    answered_at: str | None = Field(None, max_length=500, description="absent: time received")
    updated_at: str | None = Field(None, max_length=500)
    user_agent: str | None = Field(None, max_length=500)


class HmacAuth(Definition):
    """An HMAC over what the tool signs: `signed` is a template of `{body}` (the raw bytes) and,
    when the tool sends one, `{timestamp}` (the value of `timestamp_header`)."""

    type: Literal["hmac"] = "hmac"
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    header: str = Field(min_length=1, max_length=100)
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field("", max_length=50, description="before the digest, e.g. `sha256=`")
    signed: str = Field("{body}", max_length=200)
    timestamp_header: str | None = Field(None, max_length=100)


class TokenAuth(Definition):
    """A shared token in a header (`Authorization: Bearer <secret>` or a tool's own header)."""

    type: Literal["token"] = "token"
    header: str = Field(min_length=1, max_length=100)
    prefix: str = Field("", max_length=50, description="before the token, e.g. `Bearer `")


class StandardWebhooksAuth(Definition):
    type: Literal["standard-webhooks"] = "standard-webhooks"


class CustomSpec(Definition):
    fields: CustomFields
    auth: HmacAuth | TokenAuth | StandardWebhooksAuth = Field(discriminator="type")


class ApiAccess(Definition):
    """The vendor's API, for kinds whose webhook carries ids only (SurveyMonkey, Qualtrics)."""

    base_url: str = Field(max_length=500, examples=["https://api.surveymonkey.com"])
    token: SecretStr


FETCHING_KINDS: frozenset[str] = frozenset({"surveymonkey", "qualtrics"})
Secret = Annotated[SecretStr, Field(min_length=1, max_length=1000)]


class SourceSpec(Definition):
    """A source as `PUT /v1/sources/{name}` takes it (the tenant comes from the token)."""

    kind: Kind
    secrets: tuple[Secret, ...] = Field(
        min_length=1,
        max_length=5,
        description="signing secrets; several during a rotation (any one verifies). Never "
        "returned. Formbricks and Standard Webhooks secrets are written `whsec_<base64>`.",
    )
    tolerance_seconds: int = Field(
        DEFAULT_TOLERANCE_SECONDS,
        ge=1,
        le=86_400,
        description="deliveries signed this much before or after now are refused (schemes "
        "with a timestamp)",
    )
    fields: FieldRefs = FieldRefs()
    forms: dict[str, FieldRefs] = Field(
        default_factory=dict, description="per form (survey) id: overrides `fields`"
    )
    default_locale: str | None = Field(None, max_length=35, examples=["pl-PL"])
    api: ApiAccess | None = Field(None, description="required for surveymonkey and qualtrics")
    custom: CustomSpec | None = Field(None, description="required for (and only for) custom")

    @model_validator(mode="after")
    def _kind_needs(self) -> Self:
        if self.kind in FETCHING_KINDS and self.api is None:
            raise ValueError(f"a {self.kind} source needs `api` (base_url and token)")
        if (self.kind == "custom") != (self.custom is not None):
            raise ValueError("`custom` is required for kind custom and only for it")
        for path in self._json_paths():
            try:
                _compiled(path)
            except jsonpath.JSONPathError as exc:
                raise ValueError(f"not a usable JSONPath {path!r}: {exc}") from exc
        return self

    def _json_paths(self) -> list[str]:
        refs = [self.fields, *self.forms.values()]
        paths = [
            p
            for r in refs
            for p in (
                r.survey_id,
                r.customer_id,
                r.customer_email,
                r.customer_name,
                r.locale,
                r.account_id,
                *r.segments.values(),
                *r.attributes.values(),
            )
            if p is not None
        ]
        if self.custom is not None:
            paths += [p for p in self.custom.fields.model_dump().values() if p is not None]
        return paths

    def storable(self) -> dict[str, Any]:
        """The JSON kept in the database: secrets in clear (the database is the secret store)."""
        stored = self.model_dump(mode="json", exclude={"secrets", "api"})
        stored["secrets"] = [s.get_secret_value() for s in self.secrets]
        if self.api is not None:
            stored["api"] = {
                "base_url": self.api.base_url,
                "token": self.api.token.get_secret_value(),
            }
        return stored

    def public(self) -> dict[str, Any]:
        """What the API shows: everything but the secrets and the API token."""
        shown = self.model_dump(mode="json", exclude={"secrets", "api"})
        shown["secret_count"] = len(self.secrets)
        if self.api is not None:
            shown["api"] = {"base_url": self.api.base_url}
        return shown


class SourceDefinition(SourceSpec):
    """A source of one tenant."""

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    name: str = Field(pattern=SOURCE_NAME_PATTERN)

    def refs_for(self, form_id: str | None) -> FieldRefs:
        """The refs of a form: its own entries over the source's defaults."""
        own = self.forms.get(form_id) if form_id is not None else None
        if own is None:
            return self.fields
        merged = self.fields.model_dump() | own.model_dump(exclude_unset=True)
        merged["attributes"] = self.fields.attributes | own.attributes
        return FieldRefs.model_validate(merged)

    def secret_values(self) -> list[bytes]:
        return [s.get_secret_value().encode() for s in self.secrets]


# ---------------------------------------------------------------------------------------------
# What parsing yields


@dataclass(frozen=True, slots=True)
class Submission:
    """One response found in a delivery, in canonical form. `response.response_id` is already
    namespaced by kind (`typeform:<token>`); `updated_at` orders versions of one response."""

    response: CanonicalResponse
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Responses:
    submissions: Sequence[Submission]
    delivery_id: str | None = None


@dataclass(frozen=True, slots=True)
class FetchLater:
    """The webhook names a response to fetch from the vendor's API (ids only)."""

    ids: Mapping[str, str]
    delivery_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """Understood, but nothing to accept (another event type, a form without an NPS question,
    a partial response without a score yet). Answered 200 so the tool does not retry."""

    reason: str
    delivery_id: str | None = None


Parsed = Responses | FetchLater | Ignored


class SourceAdapter(Protocol):
    kind: Kind
    content_types: frozenset[str]

    def verify(self, delivery: Delivery, source: SourceDefinition) -> None:
        """Raise `BadSignature` unless one of the source's secrets signed the raw body (and, for
        schemes with a timestamp, it is within `source.tolerance_seconds` of received_at)."""
        ...

    def parse(self, delivery: Delivery, source: SourceDefinition) -> Parsed:
        """Raise `InvalidPayload` naming the field when the payload is not usable."""
        ...


class FetchFailed(Exception):
    """The vendor's API did not give the response; `transient` ones are retried with backoff."""

    def __init__(self, detail: str, *, transient: bool) -> None:
        super().__init__(detail)
        self.transient = transient


# ---------------------------------------------------------------------------------------------
# Helpers every adapter uses

_WHOLE_NUMBER = re.compile(r"^\s*(\d{1,2})\s*$")


def parse_score(value: Any, field: str) -> int:
    """A 0-10 answer: an int, or a whole number in a string ("9"). Anything else (a float, a
    bool, "9.5", 11) is `InvalidPayload` naming `field`."""
    if isinstance(value, bool):
        raise InvalidPayload(field, "an NPS score is a whole number 0-10, got a boolean")
    if isinstance(value, int):
        score = value
    elif isinstance(value, str) and (match := _WHOLE_NUMBER.match(value)):
        score = int(match.group(1))
    else:
        raise InvalidPayload(field, f"an NPS score is a whole number 0-10, got {value!r:.40}")
    if not 0 <= score <= 10:
        raise InvalidPayload(field, f"an NPS score is 0-10, got {score}")
    return score


@lru_cache(maxsize=1024)
def _compiled(path: str) -> jsonpath.JSONPath | jsonpath.CompoundJSONPath:
    return jsonpath.compile(path)


# `$.a.b[0].c`: names and indexes only, the form nearly every ref takes. Walked directly, which
# is ~30 times faster than a general JSONPath match (a webhook reads a dozen refs).
_SIMPLE_PATH = re.compile(r"^\$((?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])*)$")
_SIMPLE_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


@lru_cache(maxsize=1024)
def _simple_steps(path: str) -> tuple[str | int, ...] | None:
    match = _SIMPLE_PATH.match(path)
    if match is None:
        return None
    return tuple(
        name if name else int(index) for name, index in _SIMPLE_STEP.findall(match.group(1))
    )


def text_of(value: Any) -> str | None:
    """A payload's string without surrounding space; None for anything else or blank."""
    return value.strip() or None if isinstance(value, str) else None


def required_text(data: Mapping[str, Any], name: str, at: str) -> str:
    """`data[name]` as text, or `InvalidPayload` naming it as `<at><name>` (`at` is where
    `data` is in the payload, `form_response.`)."""
    value = text_of(data.get(name))
    if value is None:
        raise InvalidPayload(f"{at}{name}", "missing")
    return value


def lookup(document: Any, path: str | None) -> Any:
    """The first value `path` (JSONPath) selects in `document`, or None (also for no path)."""
    if path is None:
        return None
    steps = _simple_steps(path)
    if steps is not None:
        value = document
        for step in steps:
            if isinstance(step, str) and isinstance(value, dict):
                value = value.get(step)
            elif isinstance(step, int) and isinstance(value, list) and step < len(value):
                value = value[step]
            else:
                return None
        return value
    try:
        match = _compiled(path).match(document)
    except jsonpath.JSONPathError as exc:
        raise InvalidPayload(path, f"not a usable JSONPath: {exc}") from exc
    return None if match is None else match.obj


def lookup_text(document: Any, path: str | None) -> str | None:
    """`lookup` as text: numbers become their decimal text; empty text and non-scalars None."""
    value = lookup(document, path)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def verify_hmac(expected_digests: Sequence[bytes], presented: bytes | None) -> bool:
    """Constant-time: does `presented` equal one of the expected digests (compare them all)."""
    if presented is None:
        return False
    matched = False
    for digest in expected_digests:
        matched |= hmac.compare_digest(digest, presented)
    return matched


@dataclass(frozen=True, slots=True)
class CustomerParts:
    """What identifies the respondent; `customer_id` falls back to the email, then to the
    response id (an anonymous respondent is its own customer)."""

    customer_id: str | None = None
    email: str | None = None
    name: str | None = None
    locale: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def named(self, fallback: str | None) -> CustomerParts:
        """These parts with `fallback` as the name when none was found."""
        if self.name or not fallback:
            return self
        return CustomerParts(self.customer_id, self.email, fallback, self.locale, self.extra)

    def customer_json(self, response_id: str) -> dict[str, Any]:
        customer: dict[str, Any] = {"id": self.customer_id or self.email or response_id}
        if self.email:
            customer["email"] = self.email
        if self.name:
            customer["name"] = self.name
        if self.locale:
            customer["locale"] = self.locale
        return customer


_LOCALE = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z0-9]{2,8}))?")


def normalize_locale(value: str | None) -> str | None:
    """`pl`, `pl_PL`, `PL-pl` -> `pl`, `pl-PL`, `pl-pl`; None for what is not a language tag
    (a tool's odd locale never refuses a response: the tenant's default applies)."""
    if not value:
        return None
    match = _LOCALE.match(value.strip())
    if match is None:
        return None
    language, region = match.group(1).lower(), match.group(2)
    return language if region is None else f"{language}-{region}"


def canonical(
    fields: Mapping[str, Any], *, at: Mapping[str, str] | None = None
) -> CanonicalResponse:
    """Validate canonical fields into a `CanonicalResponse`; the first problem becomes
    `InvalidPayload` naming the field (through `at`, canonical field -> payload location, when
    the adapter knows where in the payload it came from)."""
    try:
        return CanonicalResponse.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first.get("loc", ())) or "body"
        top = location.split(".", 1)[0]
        where = (at or {}).get(location) or (at or {}).get(top) or location
        raise InvalidPayload(where, first.get("msg", "invalid")) from exc
