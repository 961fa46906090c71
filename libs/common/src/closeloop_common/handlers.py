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

Trace context (`tracing.py`): an emitted event carries the context of the work that made it, so
one trace follows a response through the services. The plain form runs each event's handler in
`Transaction.handling(event)`: log lines name the event and, with tracing on, a `process` span
that continues the event's trace is current, so what the handler emits continues it too. A batch
handler that works event by event does the same with `with tx.handling(event):`; one that works
on many events at once says which event caused an emitted one (`emit(..., caused_by=event)`).
Otherwise an event continues the current span (the consumer's batch, an HTTP request).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common import tracing
from closeloop_common.clock import Clock
from closeloop_common.events import CloudEvent, EventData, Topic, new_event
from closeloop_common.logging import bind_log_context, reset_log_context
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
    # With tracing on: the context each handled event's `process` span gave what it caused.
    _caused: dict[str, tracing.Carrier | None] = field(default_factory=dict, repr=False)
    _started_ns: int = field(default_factory=time.time_ns, repr=False)

    async def emit(
        self,
        data: EmittedT,
        *,
        tenant_id: str,
        subject: str | None = None,
        caused_by: CloudEvent[Any] | None = None,
    ) -> CloudEvent[EmittedT]:
        """Wrap `data` in a new event of `tenant_id` and queue it in the outbox of this transaction.

        `caused_by`: the event being handled that this one follows from (a batch handler's), whose
        trace it continues; by default it continues the current span's.
        The rows are written by `flush` (the consumer and `ServiceRuntime.transaction` call it
        before committing), many in one statement."""
        event = self.envelope(data, tenant_id=tenant_id, subject=subject, caused_by=caused_by)
        self.add(event)
        return event

    def envelope(
        self,
        data: EmittedT,
        *,
        tenant_id: str,
        subject: str | None = None,
        caused_by: CloudEvent[Any] | None = None,
        trace: tracing.Carrier | None = None,
    ) -> CloudEvent[EmittedT]:
        """A new event of this service (its id and time), not queued yet: for a command that
        needs the event id before it knows whether to emit (see `add`). `trace`: the context to
        carry when it is not the current one (a request whose write runs in a shared batch)."""
        if trace is None and tracing.enabled():
            trace = self._trace_of(caused_by)
        return new_event(
            data,
            tenant_id=tenant_id,
            source=self.source,
            clock=self.clock,
            subject=subject,
            traceparent=None if trace is None else trace[0],
            tracestate=None if trace is None else trace[1],
        )

    def _trace_of(self, cause: CloudEvent[Any] | None) -> tracing.Carrier | None:
        if cause is None:
            return tracing.carrier_of()
        if cause.id not in self._caused:
            self._caused[cause.id] = tracing.processed(cause, started_ns=self._started_ns)
        return self._caused[cause.id]

    @contextmanager
    def handling(self, event: CloudEvent[Any]) -> Iterator[None]:
        """Work done for `event`: log lines name it; with tracing on, its `process` span is
        current, so what is emitted (or stored) inside continues the event's trace."""
        token = bind_log_context(event)
        try:
            if not tracing.enabled():
                yield
                return
            with tracing.processing(event):
                self._caused[event.id] = tracing.carrier_of()
                yield
        finally:
            reset_log_context(token)

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
        if tracing.enabled():
            for event in events:
                with tx.handling(event):
                    await handler(tx.context(event.tenantid), event)
            return
        # `handling` without tracing, spelled out: the hot path sets one context variable.
        for event in events:
            token = bind_log_context(event)
            try:
                await handler(tx.context(event.tenantid), event)
            finally:
                reset_log_context(token)

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
