"""Many rows into a table with one statement and one parameter: the rows travel as a JSON array.

`insert_rows(table, ...)` is `INSERT INTO table (its columns) SELECT ... FROM
jsonb_populate_recordset(NULL::table, :rows)`, in the array's order; `json_rows` encodes the
rows (a dict per row, keyed by column; a column left out is NULL). Why not a multi-row VALUES:
asyncpg takes at most 32,767 parameters per statement (a consumer batch of cases, at 33
columns each, passes that at 993 rows), and SQLAlchemy compiles a VALUES of a new length afresh
for every batch. The statement here is compiled once and PostgreSQL converts the JSON values to
the columns' types (timestamps from ISO 8601 text, UUIDs, JSONB, text arrays from JSON arrays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa


def insert_rows(table: sa.Table, *, then: str = "") -> sa.TextClause:
    """The INSERT of `:rows` (see `json_rows`) into `table`; `then` adds an ON CONFLICT and a
    RETURNING clause."""
    name = f'"{table.schema}"."{table.name}"'
    columns = ", ".join(f'"{column.name}"' for column in table.columns)
    return sa.text(
        f"INSERT INTO {name} ({columns}) SELECT {columns} FROM "
        f"jsonb_populate_recordset(NULL::{name}, CAST(:rows AS jsonb)) WITH ORDINALITY "
        f"ORDER BY ordinality {then}"
    )


def json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """`rows` as the `:rows` parameter of `insert_rows` (datetimes and UUIDs as text; so is
    asyncpg's own UUID, read back from a row, which orjson does not know)."""
    return orjson.dumps(rows, default=str).decode()
