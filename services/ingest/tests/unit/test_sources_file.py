"""The sources file (GitOps): TOML or JSON, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop_ingest.service_layer.sources import SourcesFileError, load_sources_file

TOML = """
[tenants.acme.sources.typeform-nps]
kind = "typeform"
secrets = ["env:ACME_TYPEFORM_SECRET", "previous-secret"]
[tenants.acme.sources.typeform-nps.fields]
account_id = "$.form_response.hidden.account"

[tenants.acme.sources.sm]
kind = "surveymonkey"
secrets = ["key&secret"]
api = { base_url = "https://api.surveymonkey.com", token = "env:ACME_SM_TOKEN" }
"""


def test_sources_are_read_with_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_TYPEFORM_SECRET", "from-the-environment")
    monkeypatch.setenv("ACME_SM_TOKEN", "sm-token")
    path = tmp_path / "sources.toml"
    path.write_text(TOML, encoding="utf-8")

    typeform, sm = sorted(load_sources_file(path), key=lambda d: d.name, reverse=True)

    assert (typeform.tenant_id, typeform.name, typeform.kind) == (
        "acme",
        "typeform-nps",
        "typeform",
    )
    assert typeform.secret_values() == [b"from-the-environment", b"previous-secret"]
    assert typeform.fields.account_id == "$.form_response.hidden.account"
    assert sm.api is not None
    assert sm.api.token.get_secret_value() == "sm-token"
    assert "sm-token" not in repr(sm)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TOML, "ACME_TYPEFORM_SECRET"),  # the variable is not set
        ('[tenants.acme.sources.x]\nkind = "nope"\nsecrets = ["s"]', "acme/x"),
        ('[tenants.acme.sources.x]\nkind = "custom"\nsecrets = ["s"]', "custom"),
        ("tenants = 3", "tenants"),
        ("not toml [", "sources.toml"),
    ],
)
def test_a_bad_file_is_refused_naming_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.delenv("ACME_TYPEFORM_SECRET", raising=False)
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourcesFileError, match=message):
        load_sources_file(path)


def test_a_refused_file_never_shows_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        '[tenants.acme.sources.x]\nkind = "surveymonkey"\nsecrets = ["very-secret-value"]\n'
        'api = { base_url = "https://api.surveymonkey.com", token = "token-secret", x = 1 }',
        encoding="utf-8",
    )
    with pytest.raises(SourcesFileError) as refused:
        load_sources_file(path)
    assert "very-secret-value" not in str(refused.value)
    assert "token-secret" not in str(refused.value)
    assert refused.value.__cause__ is None
