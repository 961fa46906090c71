"""The per-tenant configuration file: read at start (TOML or JSON), validated whole, and a bad file
stops the service with a message naming the file and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from closeloop_common.events import Owner
from closeloop_common.tenants import TenantConfig, TenantDirectory, TenantsFileError

ACME_AND_GLOBEX = """
[tenants.acme]
company_name = "Acme Sp. z o.o."
from_address = "opinie@acme.example"
from_name = "Zespół Acme"
default_locale = "pl-PL"
key_accounts = ["hurtownia-nowak"]
first_contact_sla_hours = 24
key_account_sla_hours = 4

[[tenants.acme.team]]
id = "ewa"
name = "Ewa Zielińska"
email = "ewa@acme.example"

[tenants.globex]
company_name = "Globex"
from_address = "care@globex.example"

[[tenants.globex.team]]
id = "hank"
name = "Hank Scorpio"
email = "hank@globex.example"
"""


def write(tmp_path: Path, text: str, name: str = "tenants.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_each_listed_tenant_has_its_own_settings(tmp_path: Path) -> None:
    tenants = TenantDirectory.load(write(tmp_path, ACME_AND_GLOBEX))

    acme, globex = tenants.of("acme"), tenants.of("globex")

    assert acme.team == (Owner(id="ewa", name="Ewa Zielińska", email="ewa@acme.example"),)
    assert globex.team == (Owner(id="hank", name="Hank Scorpio", email="hank@globex.example"),)
    assert (acme.from_address, acme.from_name) == ("opinie@acme.example", "Zespół Acme")
    assert (globex.from_address, globex.from_name) == ("care@globex.example", None)
    assert acme.key_accounts == frozenset({"hurtownia-nowak"})
    assert (acme.first_contact_sla_hours, acme.key_account_sla_hours) == (24, 4)
    assert acme.default_locale == "pl-PL"
    assert sorted(tenants) == ["acme", "globex"]


def test_a_tenant_not_listed_gets_no_overrides(tmp_path: Path) -> None:
    tenants = TenantDirectory.load(write(tmp_path, ACME_AND_GLOBEX))

    assert tenants.of("initech") == TenantConfig()
    assert TenantDirectory.load(None).of("acme") == TenantConfig()


def test_json_works_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        json.dumps({"tenants": {"acme": {"company_name": "Acme", "key_accounts": ["a-1"]}}}),
        name="tenants.json",
    )

    acme = TenantDirectory.load(path).of("acme")

    assert (acme.company_name, acme.key_accounts) == ("Acme", frozenset({"a-1"}))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param('[tenants."Not A Tenant"]\ncompany_name = "x"\n', "Not A Tenant", id="bad-id"),
        pytest.param('[tenants.acme]\ncompany = "typo"\n', "company", id="unknown-field"),
        pytest.param('[tenants.acme]\nfrom_address = "nobody"\n', "from_address", id="bad-email"),
        pytest.param("[tenants.acme]\nteam = []\n", "team", id="empty-team"),
        pytest.param("[tenants.acme]\nfirst_contact_sla_hours = 0\n", "sla", id="zero-sla"),
        pytest.param('[tenants.acme]\ndefault_locale = "Polish"\n', "locale", id="bad-locale"),
        pytest.param("[tenants.acme\n", "tenants.toml", id="not-toml"),
        pytest.param('[other]\nx = "y"\n', "other", id="unknown-top-level"),
    ],
)
def test_a_bad_file_fails_loudly_naming_what_is_wrong(
    tmp_path: Path, text: str, named: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(TenantsFileError, match=re.escape(str(path))) as failed:
        TenantDirectory.load(path)

    assert named in str(failed.value)


def test_a_missing_file_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(TenantsFileError, match=r"missing\.toml"):
        TenantDirectory.load(tmp_path / "missing.toml")
