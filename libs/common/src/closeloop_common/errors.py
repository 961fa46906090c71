"""How failures are classified, once, for every consumer and worker.

- `is_transient`: the infrastructure is the problem (database or broker down, restarting, out of
  connections, a lock or statement timeout, a serialization conflict): retry without limit, the
  message is fine. Anything else is an error of the message or of the code: retried a bounded
  number of times, then dead-lettered.
- `describe_error`: a description of an exception that is safe to put in a dead-letter header or a
  metric: the exception's class and, for validation errors, the locations and kinds of the failures,
  never the input values (customer names, emails, comments).
"""

from __future__ import annotations

from aiokafka import errors as kafka_errors
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

# SQLSTATE classes that say the database (or its configuration) is the problem, not the message:
# 08 connection exception, 53 insufficient resources (too many clients), 57P operator intervention
# (shutting down, starting up), 57014 query cancelled (statement timeout), 55P03 lock not
# available (lock timeout), 28 invalid authorization, 3D000 no such database, and the two
# conflicts a retry resolves (40001 serialization failure, 40P01 deadlock).
_TRANSIENT_SQLSTATE_PREFIXES = (
    "08",
    "53",
    "57P",
    "57014",
    "55P03",
    "28",
    "3D000",
    "40001",
    "40P01",
)


def _sqlstates(exc: BaseException) -> list[str]:
    """SQLSTATE codes found on the exception, the driver error it wraps, and their causes."""
    found: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str):
            found.append(code)
        orig = getattr(current, "orig", None)
        pending += [
            orig if isinstance(orig, BaseException) else None,
            current.__cause__,
            current.__context__,
        ]
    return found


def is_transient(exc: BaseException) -> bool:
    """Errors of the infrastructure rather than of the message: worth retrying without limit."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if any(code.startswith(_TRANSIENT_SQLSTATE_PREFIXES) for code in _sqlstates(exc)):
        return True
    # sqlalchemy.exc.TimeoutError is the connection pool's "no connection free in time": a busy
    # process, not a bad message. It is not a subclass of the builtin TimeoutError.
    return isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.TimeoutError
        | OSError
        | TimeoutError
        | KafkaError,
    )


# Refusals of a record that no retry will change. Anything else from the broker (timeouts, no
# leader, connection lost) is an outage and is retried.
_PERMANENT_KAFKA_ERRORS: tuple[type[KafkaError], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.CorruptRecordException,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
)


def is_permanent_kafka_error(exc: BaseException) -> bool:
    """The broker (or the client, before sending) refused a record for good."""
    return isinstance(exc, _PERMANENT_KAFKA_ERRORS)


def backoff(attempt: int, *, base: float = 0.2, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): doubling, capped."""
    return min(cap, base * 2.0 ** min(max(0, attempt - 1), 30))


def describe_error(exc: BaseException) -> str:
    """The class of an error and where it happened, without any input value."""
    name = type(exc).__name__
    if isinstance(exc, ValidationError):
        where = ", ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '<root>'}: {e['type']}"
            for e in exc.errors(include_url=False, include_input=False)[:20]
        )
        return f"{name} ({exc.error_count()} errors): {where}"[:1000]
    codes = _sqlstates(exc)
    if codes:
        return f"{name} (SQLSTATE {codes[0]})"
    if exc.__cause__ is not None:
        return f"{name} caused by {describe_error(exc.__cause__)}"[:1000]
    return name
