"""The one interface every delivery channel implements (email over SMTP, outbound webhooks).

A channel takes an `Outgoing` message and returns when the other side accepted it, or raises one
of three errors that say whose problem the failure is:

- `ChannelUnavailable`: the channel as a whole cannot deliver now (the SMTP server is down).
  The dispatcher puts the message back, its attempt not counted, and holds that channel's queue.
- `ChannelMisconfigured`: the other side refuses our configuration (credentials, TLS, From
  address). Held like an outage, and logged as an error for an operator.
- `DeliveryError`: this message was refused, for good (`permanent`) or for now; a retry after a
  backoff, or `failed` at once.

A new channel is one module with a class that has `name`, `send` and `aclose`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A rendered message, ready for a channel."""

    message_id: str  # stable across retries: the Message-ID / webhook-id
    tenant_id: str
    kind: str
    recipient: str  # an email address (normalised) or a webhook URL
    subject: str
    text: str
    html: str | None = None
    sender: str = ""  # email only: the From address and name
    sender_name: str = ""
    reply_to: str | None = None
    unsubscribe_url: str | None = None  # email to customers: List-Unsubscribe (RFC 8058)
    headers: tuple[tuple[str, str], ...] = ()  # extra headers (X-Closeloop-*, Content-Language)
    payload: Mapping[str, Any] = field(default_factory=dict)  # JSON channels: the body
    secret: str | None = None  # webhook: the Standard Webhooks signing secret (`whsec_...`)


class ChannelUnavailable(Exception):
    """The channel cannot deliver anything now (an outage)."""


class ChannelMisconfigured(Exception):
    """The other side refuses our configuration (credentials, TLS, sender)."""


class DeliveryError(Exception):
    """This message was refused: for good (`permanent`) or for now (`retry_after` if it said)."""

    def __init__(
        self, detail: str, *, permanent: bool, retry_after: timedelta | None = None
    ) -> None:
        super().__init__(detail)
        self.permanent = permanent
        self.retry_after = retry_after


class Channel(Protocol):
    name: str

    async def send(self, message: Outgoing) -> None:
        """Deliver `message`; raises as the module docstring says."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections."""
        ...
