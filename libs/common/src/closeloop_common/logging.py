"""Structured logging: one JSON object per line on stderr (or plain text for humans).

Besides a record's own `extra`, a JSON line names what the code was working on:
- `trace_id` and `span_id` of the current span, when tracing is on (`tracing.py`), so a log line
  leads to its trace;
- the fields of the log context (`bind_log_context`): the consumer binds each event it hands to a
  handler (`event_id`, `event_type`, `tenant_id`, and `response_id`/`case_id` when the event has
  them), the notifier each message it sends. A record's own `extra` wins over both.

The password of a URL (`scheme://user:password@host`) never leaves in a line, whatever carried it
(a message, an exception, an `extra` value): it is written as `***`, in JSON and plain text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry import trace

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class LogSubject(Protocol):
    """Something log lines name while it is worked on (a `CloudEvent` is one)."""

    def log_fields(self) -> Mapping[str, object]: ...


_SUBJECT: ContextVar[LogSubject | None] = ContextVar("closeloop_log_subject", default=None)


def bind_log_context(subject: LogSubject) -> Token[LogSubject | None]:
    """Name `subject` in every log line of this context until `reset_log_context`. Its fields are
    asked for only when a line is written, so binding costs one context variable set."""
    return _SUBJECT.set(subject)


def reset_log_context(token: Token[LogSubject | None]) -> None:
    _SUBJECT.reset(token)


class LogFields(dict[str, object]):
    """Fixed fields as a `LogSubject`."""

    def log_fields(self) -> Mapping[str, object]:
        return self


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Name `fields` (those not None) in every log line written inside the block."""
    token = bind_log_context(LogFields({k: v for k, v in fields.items() if v is not None}))
    try:
        yield
    finally:
        reset_log_context(token)


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@\"']*):[^\s/@\"']+@")


def redact_url_passwords(text: str) -> str:
    """`text` with the password of every URL in it written as `***`."""
    return _URL_PASSWORD.sub(r"\g<head>:***@", text)


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_url_passwords(super().format(record))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        subject = _SUBJECT.get()
        if subject is not None:
            entry.update(subject.log_fields())
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact_url_passwords(json.dumps(entry, default=str, ensure_ascii=False))


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger (and uvicorn's) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            PlainFormatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # aiokafka logs every rebalance step at INFO; keep its warnings and errors.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
