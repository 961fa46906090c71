"""Typed event handlers and the context they run in.

A service registers one handler per contract class (`runtime.on(ResponseReceivedV1, handler)`).
The handler gets a `HandlerContext` and a `CloudEvent[ResponseReceivedV1]`; the context carries the
database session of the consumer's transaction, the clock, the event's tenant and `emit`, which
wraps contract data in a new CloudEvent and stores it in the service's outbox in that same
transaction. No service passes a source, a clock or an outbox by hand.

A handler may also come in a batch form (`runtime.on_batch(Contract, handler)`): it gets a
`Transaction` and every new event of one consumer batch in partition order, so it can update an
aggregate with one statement. The plain form is looped over the batch.

Everything a handler writes, including what it emits, commits or rolls back with the inbox rows of
its events: that is what makes the effect exactly once. A batch handler whose effect is idempotent
by itself (it keeps, per entity, the version it applied and ignores what is not newer) may say so
(`idempotent=True`): its events then skip the inbox, which saves a row per event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.clock import Clock
from closeloop_common.events import CloudEvent, EventData, Topic, new_event
from closeloop_common.outbox import Outbox

DataT = TypeVar("DataT", bound=EventData)
EmittedT = TypeVar("EmittedT", bound=EventData)


@dataclass
class Transaction:
    """One database transaction of a consumer (or a command) and the events it emits."""

    session: AsyncSession
    clock: Clock
    source: str
    outbox: Outbox
    emitted: list[CloudEvent[Any]] = field(default_factory=list)

    async def emit(
        self, data: EmittedT, *, tenant_id: str, subject: str | None = None
    ) -> CloudEvent[EmittedT]:
        """Wrap `data` in a new event of `tenant_id` and queue it in the outbox of this transaction.

        The rows are written by `flush` (the consumer and `ServiceRuntime.transaction` call it
        before committing), many in one statement."""
        event = self.envelope(data, tenant_id=tenant_id, subject=subject)
        self.add(event)
        return event

    def envelope(
        self, data: EmittedT, *, tenant_id: str, subject: str | None = None
    ) -> CloudEvent[EmittedT]:
        """A new event of this service (its id and time), not queued yet: for a command that
        needs the event id before it knows whether to emit (see `add`)."""
        return new_event(
            data, tenant_id=tenant_id, source=self.source, clock=self.clock, subject=subject
        )

    def add(self, event: CloudEvent[Any]) -> None:
        """Queue an event made by `envelope` in this transaction's outbox."""
        self.emitted.append(event)

    def context(self, tenant_id: str) -> HandlerContext:
        return HandlerContext(self, tenant_id)

    async def flush(self) -> None:
        """Write the emitted events to the outbox (part of this transaction)."""
        if self.emitted:
            await self.outbox.add_many(self.session, self.emitted)
            self.emitted = []


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler of one event may use: its transaction, clock and tenant, and `emit`."""

    transaction: Transaction
    tenant_id: str

    @property
    def session(self) -> AsyncSession:
        return self.transaction.session

    @property
    def clock(self) -> Clock:
        return self.transaction.clock

    async def emit(self, data: EmittedT, *, subject: str | None = None) -> CloudEvent[EmittedT]:
        """Queue `data` as a new event of this context's tenant (same transaction)."""
        return await self.transaction.emit(data, tenant_id=self.tenant_id, subject=subject)


Handler = Callable[[HandlerContext, CloudEvent[DataT]], Awaitable[None]]
BatchHandler = Callable[[Transaction, Sequence[CloudEvent[DataT]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Registration(Generic[DataT]):
    """A batch handler and the contracts it takes. A handler registered for several contracts
    gets consecutive events of any of them in one call, in partition order."""

    contracts: tuple[type[DataT], ...]
    batch: BatchHandler[DataT]
    idempotent: bool = False


def looped(handler: Handler[DataT]) -> BatchHandler[DataT]:
    """The batch form of a plain handler: one call per event, in order."""

    async def run(tx: Transaction, events: Sequence[CloudEvent[DataT]]) -> None:
        for event in events:
            await handler(tx.context(event.tenantid), event)

    return run


class HandlerRegistry:
    """Handlers by event type; one per contract class."""

    def __init__(self) -> None:
        self._by_type: dict[str, Registration[Any]] = {}

    def on(self, contract: type[DataT], handler: Handler[DataT]) -> None:
        self.on_batch(contract, looped(handler))

    def on_batch(
        self, contract: type[DataT], handler: BatchHandler[DataT], *, idempotent: bool = False
    ) -> None:
        self.on_batches((contract,), handler, idempotent=idempotent)

    def on_batches(
        self,
        contracts: tuple[type[Any], ...],
        handler: BatchHandler[Any],
        *,
        idempotent: bool = False,
    ) -> None:
        """One batch handler for events of several contracts (say, every version of an entity)."""
        registration: Registration[Any] = Registration(contracts, handler, idempotent)
        for contract in contracts:
            if contract.EVENT_TYPE in self._by_type:
                raise ValueError(f"a handler for {contract.EVENT_TYPE} is registered already")
        for contract in contracts:
            self._by_type[contract.EVENT_TYPE] = registration

    def get(self, event_type: str) -> Registration[Any] | None:
        return self._by_type.get(event_type)

    def topics(self) -> list[Topic]:
        """Topics of the registered contracts, in registration order, once each."""
        return list(dict.fromkeys(c.TOPIC for r in self._by_type.values() for c in r.contracts))

    def __bool__(self) -> bool:
        return bool(self._by_type)
