"""Database errors and logs name statements, never their values (emails, names, comments)."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from closeloop_common.db import make_engine
from closeloop_common.settings import CommonSettings


async def test_a_failing_statement_does_not_show_its_parameters(
    infra: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(CommonSettings().database_url, pool_size=1)
    secret = "anna.nowak@example.pl"
    try:
        with caplog.at_level(logging.DEBUG, logger="sqlalchemy.engine"):
            async with engine.connect() as conn:
                await conn.execute(sa.text("CREATE TEMP TABLE t (n int NOT NULL, email text)"))
                with pytest.raises(sa.exc.DBAPIError) as failure:
                    await conn.execute(
                        sa.text("INSERT INTO t (n, email) VALUES (NULL, :email)"), {"email": secret}
                    )
    finally:
        await engine.dispose()
    assert "INSERT INTO t" in str(failure.value)  # the statement is named …
    assert secret not in str(failure.value)  # … but not what was in it
    assert secret not in caplog.text
