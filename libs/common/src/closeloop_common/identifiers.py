"""Identifiers every part of Closeloop agrees on, with no dependency: the contracts, the settings
and the HTTP shell all check tenant ids against this one pattern."""

from __future__ import annotations

# Lower-case letters, digits, `_` and `-`, at most 63 characters: safe in a Kafka key
# (`<tenant>:<customer>`), a URL, a log line and a metric label, and never containing `:`.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
