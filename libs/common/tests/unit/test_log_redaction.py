"""A URL's password never leaves in a log line, in JSON or plain text, whatever carries it."""

from __future__ import annotations

import logging
import sys

import pytest

from closeloop_common.logging import JsonFormatter, PlainFormatter, redact_url_passwords

URL = "postgresql+asyncpg://closeloop:s3cr3t-pw@db.internal:5432/closeloop"


@pytest.mark.parametrize(
    ("given", "written"),
    [
        (URL, "postgresql+asyncpg://closeloop:***@db.internal:5432/closeloop"),
        ("to smtp://mailer:p%40ss@smtp.example.com ok", "to smtp://mailer:***@smtp.example.com ok"),
        ("https://:token-only@hooks.example.com/x", "https://:***@hooks.example.com/x"),
        ("https://hooks.example.com/x?a=b", "https://hooks.example.com/x?a=b"),
        ("user:password@example.com is no URL", "user:password@example.com is no URL"),
        ("mailto:ola@example.com", "mailto:ola@example.com"),
        ("http://127.0.0.1:8001/v1/nps", "http://127.0.0.1:8001/v1/nps"),
    ],
)
def test_the_password_of_a_url_is_written_as_stars(given: str, written: str) -> None:
    assert redact_url_passwords(given) == written


def record_with_a_url_everywhere() -> logging.LogRecord:
    try:
        raise ConnectionError(f"cannot reach {URL}")
    except ConnectionError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "closeloop.test", logging.ERROR, __file__, 1, "connecting to %s", (URL,), exc_info
    )
    record.database = URL
    return record


def test_json_and_plain_lines_carry_no_url_password() -> None:
    json_line = JsonFormatter("test").format(record_with_a_url_everywhere())
    plain_line = PlainFormatter("%(message)s %(database)s").format(record_with_a_url_everywhere())

    for line in (json_line, plain_line):
        assert "s3cr3t-pw" not in line
        assert line.count("closeloop:***@db.internal") == 3  # message, extra, exception
