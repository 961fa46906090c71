"""`closeloop-token`: a key pair written once (private key readable by its owner only), and tokens
minted from it that the services accept with the tenant, scopes and lifetime asked for."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest

from closeloop_common.auth import Authenticator, Scope
from closeloop_common.settings import CommonSettings
from closeloop_common.tokens import main


def test_keygen_writes_a_key_pair_with_a_private_key_for_its_owner_only(tmp_path: Path) -> None:
    keys = tmp_path / "auth"

    assert main(["keygen", "--dir", str(keys)]) == 0

    private, public = keys / "private.pem", keys / "public.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_keygen_refuses_to_overwrite_an_existing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", "--dir", str(tmp_path)]) == 0
    before = (tmp_path / "private.pem").read_bytes()

    assert main(["keygen", "--dir", str(tmp_path)]) != 0

    assert (tmp_path / "private.pem").read_bytes() == before
    assert "exists" in capsys.readouterr().err


async def test_a_minted_token_is_accepted_with_its_tenant_scopes_and_lifetime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["keygen", "--dir", str(tmp_path)])
    capsys.readouterr()

    code = main(
        [
            *("mint", "--key", str(tmp_path / "private.pem"), "--tenant", "acme"),
            *("--scope", "read", "--scope", "cases:write", "--ttl", "600", "--subject", "ops"),
        ]
    )

    assert code == 0
    token = capsys.readouterr().out.strip()
    auth = Authenticator.from_settings(
        CommonSettings(environment="test", auth_public_key_file=tmp_path / "public.pem")
    )
    principal = await auth.authenticate(token)
    assert principal.tenant == "acme"
    assert principal.scopes == frozenset({Scope.READ, Scope.CASES_WRITE})
    assert principal.subject == "ops"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(["--tenant", "Not Valid", "--scope", "read"], id="bad-tenant"),
        pytest.param(["--tenant", "acme", "--scope", "root"], id="unknown-scope"),
        pytest.param(["--tenant", "acme"], id="no-scope"),
    ],
)
def test_mint_refuses_what_no_service_would_accept(
    tmp_path: Path, bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["keygen", "--dir", str(tmp_path)])
    capsys.readouterr()

    with pytest.raises(SystemExit) as exited:
        main(["mint", "--key", str(tmp_path / "private.pem"), "--ttl", "60", *bad])

    assert exited.value.code != 0
    assert capsys.readouterr().out == ""
