"""Identifiers every part of Closeloop agrees on, with no dependency: the contracts, the settings
and the HTTP shell all check tenant ids against this one pattern."""

from __future__ import annotations

import uuid

# Lower-case letters, digits, `_` and `-`, at most 63 characters: safe in a Kafka key
# (`<tenant>:<customer>`), a URL, a log line and a metric label, and never containing `:`.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

# A case's id is derived from its cause, so every service that knows the cause knows the case
# (the orchestrator opens it, the notifier finds an erased respondent's cases by it).
# uuid5(NAMESPACE_URL, "urn:closeloop:case-id"), written out: it must never change.
CASE_ID_NAMESPACE = uuid.UUID("d5279309-5e49-5d08-859c-ec59de98b00f")
# The namespace of lack-of-response cases, named by the unanswered invitation.
NO_RESPONSE_CASE_NAMESPACE = uuid.UUID("6f1d7b0e-3c55-4f4e-9a52-0b6f2b0c51d4")


def case_id_for(*, tenant_id: str, response_id: str) -> uuid.UUID:
    """The id of the follow-up case of a response: the same for the same tenant and response."""
    return uuid.uuid5(CASE_ID_NAMESPACE, f"{tenant_id}:{response_id}")


def no_response_case_id_for(*, tenant_id: str, invitation_id: str) -> uuid.UUID:
    """The id of the lack-of-response case of an unanswered invitation."""
    return uuid.uuid5(NO_RESPONSE_CASE_NAMESPACE, f"{tenant_id}:{invitation_id}")
