"""The log scanner (`closeloop_devtools.logscan`) finds a needle in every spelling a log line can
give it, and names the leak without repeating it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from closeloop_devtools.logscan import main, scan, secrets_of


def test_a_needle_is_found_as_it_is_json_escaped_percent_encoded_and_lower_cased(
    tmp_path: Path,
) -> None:
    log = tmp_path / "svc.log"
    lines = [
        json.dumps({"msg": "ok"}),
        json.dumps({"msg": 'name "Zoë Ł"'}),  # JSON escaping (ensure_ascii)
        json.dumps({"path": "/v1/opt-outs/Jan.Kowalski%40example.com"}),
        json.dumps({"msg": "to jan.kowalski@example.com"}),
        json.dumps({"url": "postgresql://closeloop:s3cr3t-pw@db/x"}),
    ]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")

    findings = scan(
        [tmp_path],
        {
            "name": 'name "Zoë Ł"',
            "email": "Jan.Kowalski@example.com",
            **secrets_of({"DATABASE_URL": "postgresql+asyncpg://closeloop:s3cr3t-pw@db/x"}),
        },
    )

    assert [(f.label, f.line) for f in findings] == [
        ("name", 2),
        ("email", 3),
        ("email", 4),
        ("DATABASE_URL password", 5),
    ]
    assert all("s3cr3t" not in str(f) for f in findings)


def test_the_secrets_of_an_environment_are_its_passwords_and_keys() -> None:
    env = {
        "DATABASE_URL": "postgresql+asyncpg://app:pw-123456@127.0.0.1/closeloop",
        "NOTIFIER_SMTP_PASSWORD": "smtp-pw-123456",
        "NOTIFIER_UNSUBSCRIBE_SECRET": "unsubscribe-key-123456",
        "KAFKA_TOPIC_PREFIX": "not-a-secret",
    }
    assert secrets_of(env) == {
        "DATABASE_URL password": "app:pw-123456@",
        "NOTIFIER_SMTP_PASSWORD": "smtp-pw-123456",
        "NOTIFIER_UNSUBSCRIBE_SECRET": "unsubscribe-key-123456",
    }
    assert secrets_of({"DATABASE_URL": "postgresql://127.0.0.1/x"}) == {}


def test_a_needle_too_short_to_mean_anything_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shorter than"):
        scan([tmp_path], {"name": "Jan"})


def test_the_command_line_fails_on_a_leak_and_names_it_without_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notifier.log").write_text('{"msg": "sent to ola@example.com"}\n', "utf-8")

    assert main([str(tmp_path), "--needle", "customer email=ola@example.com"]) == 1
    assert capsys.readouterr().out == f"{tmp_path / 'notifier.log'}:1: customer email\n"
    assert main([str(tmp_path), "--needle", "other email=ewa@example.com"]) == 0
