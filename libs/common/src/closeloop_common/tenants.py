"""Per-tenant settings: one deployment serves several companies without sharing owners or senders.

`TENANTS_FILE` names a TOML (or, by a `.json` suffix, JSON) file read once at start:

    [tenants.acme]
    company_name = "Acme Sp. z o.o."
    from_address = "opinie@acme.example"
    from_name = "Zespół Acme"
    default_locale = "pl-PL"          # for customers whose locale is unknown
    key_accounts = ["hurtownia-nowak"]
    first_contact_sla_hours = 24
    key_account_sla_hours = 8

    [[tenants.acme.team]]
    id = "ewa"
    name = "Ewa Zielińska"
    email = "ewa@acme.example"

Every field is optional: what a tenant leaves out, and every tenant not listed, takes the service's
environment settings (`ORCHESTRATOR_*`, `NOTIFIER_*`), which each service merges in itself. The
whole file is validated at start; a bad file raises `TenantsFileError` naming the file and field,
so a service never starts with half a configuration.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from closeloop_common.events import EMAIL_PATTERN, LOCALE_PATTERN, Owner
from closeloop_common.identifiers import TENANT_ID_PATTERN

TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]


class TenantConfig(BaseModel):
    """One tenant's settings; None means "the service's environment default"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    company_name: str | None = Field(None, min_length=1, max_length=200)
    from_address: str | None = Field(None, max_length=320, pattern=EMAIL_PATTERN)
    from_name: str | None = Field(None, min_length=1, max_length=200)
    default_locale: str | None = Field(None, max_length=35, pattern=LOCALE_PATTERN)
    team: tuple[Owner, ...] | None = Field(None, min_length=1)
    key_accounts: frozenset[str] | None = None
    first_contact_sla_hours: float | None = Field(None, gt=0, le=24 * 30)
    key_account_sla_hours: float | None = Field(None, gt=0, le=24 * 30)


class TenantsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: dict[TenantId, TenantConfig] = Field(default_factory=dict)


class TenantsFileError(ValueError):
    """The tenants file is missing, unreadable or invalid."""


class TenantDirectory:
    """The listed tenants' settings; `of(tenant)` is empty (all defaults) for anyone else."""

    _UNLISTED = TenantConfig()

    def __init__(self, tenants: Mapping[str, TenantConfig] | None = None) -> None:
        self._tenants = dict(tenants or {})

    @classmethod
    def load(cls, path: Path | None) -> TenantDirectory:
        if path is None:
            return cls()
        try:
            text = path.read_text(encoding="utf-8")
            raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
            parsed = TenantsFile.model_validate(raw)
        except (OSError, ValueError) as exc:  # ValidationError and decode errors are ValueErrors
            detail = _readable(exc) if isinstance(exc, ValidationError) else str(exc)
            raise TenantsFileError(f"TENANTS_FILE {path} is not valid: {detail}") from exc
        return cls(parsed.tenants)

    def of(self, tenant_id: str) -> TenantConfig:
        return self._tenants.get(tenant_id, self._UNLISTED)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tenants)

    def __contains__(self, tenant_id: object) -> bool:
        return tenant_id in self._tenants


def _readable(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )
