"""Group commit for HTTP writes: concurrent requests share one database transaction.

A request hands its write to `GroupCommitter.submit(work)`, where `work` is an async function of
the shared `AsyncSession` that returns the request's result. One worker task takes the first
waiting item, gathers the items that arrive within `max_wait_ms` (at most `max_batch` in all),
and runs them one after another in one transaction, each inside its own SAVEPOINT. Then it
commits once, and only then does each `submit` return: a request answers only after its write
is durable. One COMMIT (one WAL flush) serves the whole batch instead of one per request.

Outcomes:
- `work` raises: its SAVEPOINT is rolled back, so nothing it wrote is kept, and its caller gets
  that exception at once; the other items of the batch go on and commit.
- the transaction cannot begin or the COMMIT fails: every caller whose work had succeeded gets
  `GroupCommitError`, with the database's error as its `__cause__`; nothing of the batch is kept.
- a caller cancelled before its work started: the work is skipped. Once started, it runs and
  commits with its batch (like a request whose commit was already under way); the cancelled
  caller just does not hear of it. Either way the batch goes on.
- `stop()`: no new work is accepted (`GroupCommitterStopped`); what was submitted before is run
  and committed, then the worker ends.

`work` must not commit, roll back or close the session, and should return plain values, not ORM
objects bound to the shared session. Callbacks registered with `db.on_commit` run at the shared
COMMIT (for every item of the batch, including one whose SAVEPOINT was rolled back).
While one batch commits the next one gathers, so under load batches fill without any wait.
With tracing on, each batch is a `group commit` span linked to its callers' spans.
`concurrency` lets that many batches be in flight at once (each in its own transaction and
connection): while one waits on the database the next is prepared. Batches may then commit in
another order than they were gathered; writers that share rows must take their locks in one order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from closeloop_common import tracing
from closeloop_common.errors import is_transient

T = TypeVar("T")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
Work = Callable[[AsyncSession], Awaitable[T]]
Process = Callable[[AsyncSession, Sequence[ItemT]], Awaitable[Sequence[ResultT]]]


class GroupCommitError(RuntimeError):
    """The shared transaction did not commit: nothing of the caller's work was kept."""


class GroupCommitterStopped(RuntimeError):
    """`submit` after `stop()` (or before `start()`)."""


@dataclass(slots=True)
class _Item:
    work: Any  # a `Work` (GroupCommitter) or an item of data (BatchCommitter)
    future: asyncio.Future[Any]
    result: Any = None
    context: Context | None = None  # the caller's trace context (tracing on only)


_STOP = object()


class _Batcher:
    """The queue, the worker and the gathering shared by both committers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = 100,
        max_wait_ms: float = 2.0,
        concurrency: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._sessions = sessions
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[_Item | object] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._accepting = False

    async def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("GroupCommitter already started")
        self._accepting = True
        self._worker = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Refuse new work, run and commit what was submitted, then end the worker."""
        if self._worker is None:
            return
        self._accepting = False
        self._queue.put_nowait(_STOP)
        try:
            await self._worker
        finally:
            self._worker = None
            # Left only if the worker was cancelled: their callers must not wait forever.
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if isinstance(item, _Item) and not item.future.done():
                    item.future.set_exception(GroupCommitterStopped("stopped before it ran"))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _submit(self, work: Any) -> Any:
        if not self._accepting:
            raise GroupCommitterStopped("the group committer is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        context = otel_context.get_current() if tracing.enabled() else None
        self._queue.put_nowait(_Item(work, future, context=context))
        # Cancelling the caller cancels `future`: the worker then skips the work if not started.
        return await future

    async def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                # A free slot first, then the batch: with one slot, a batch gathers everything
                # that arrived while the one before it committed.
                await self._slots.acquire()
                first = await self._queue.get()
                if first is _STOP:
                    self._slots.release()
                    return
                assert isinstance(first, _Item)
                batch = [first]
                stopping = await self._gather(batch)
                task = asyncio.create_task(self._commit_then_free(batch))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
        finally:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _commit_then_free(self, batch: list[_Item]) -> None:
        try:
            if tracing.enabled():
                with tracing.span(
                    "group commit",
                    links=tracing.links_to([item.context for item in batch]),
                    attributes={"closeloop.batch.size": len(batch)},
                ):
                    await self._commit(batch)
            else:
                await self._commit(batch)
        finally:
            self._slots.release()

    async def _gather(self, batch: list[_Item]) -> bool:
        """Add the items arriving within the wait to `batch`; True once the stop mark was seen."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + self._max_wait):
                while len(batch) < self._max_batch:
                    # Items already queued are taken without waiting, even after the deadline.
                    item = (
                        self._queue.get_nowait()
                        if not self._queue.empty()
                        else await self._queue.get()
                    )
                    if item is _STOP:
                        return True
                    assert isinstance(item, _Item)
                    batch.append(item)
        except TimeoutError:
            pass
        return False

    async def _commit(self, batch: list[_Item]) -> None:
        raise NotImplementedError


class GroupCommitter(_Batcher):
    """Runs each caller's `work` in a SAVEPOINT of one shared transaction (see the module)."""

    async def submit(self, work: Work[T]) -> T:
        """Run `work(session)` in the next shared transaction; return its result once committed."""
        result: T = await self._submit(work)
        return result

    async def _commit(self, batch: list[_Item]) -> None:
        """Run the batch in one transaction; settle every future whatever happens."""
        try:
            if any(not item.future.done() for item in batch):
                async with self._sessions() as session, session.begin():
                    for item in batch:
                        await self._run_item(session, item)
        except Exception as exc:
            # BEGIN or COMMIT failed (or the connection was lost): nothing of the batch is kept.
            failure = GroupCommitError(f"the shared transaction did not commit: {exc!r}")
            failure.__cause__ = exc
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
        else:
            for item in batch:
                if not item.future.done():
                    item.future.set_result(item.result)
        finally:
            # Reached with callers still waiting only when the worker itself is cancelled.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(GroupCommitError("the batch was abandoned"))

    @staticmethod
    async def _run_item(session: AsyncSession, item: _Item) -> None:
        if item.future.done():  # its caller was cancelled while it waited
            return
        try:
            async with session.begin_nested():
                item.result = await item.work(session)
        except Exception as exc:
            # The SAVEPOINT is rolled back: the caller's failure is final, whatever the batch does.
            if not item.future.done():
                item.future.set_exception(exc)


class BatchCommitter(_Batcher, Generic[ItemT, ResultT]):
    """Group commit for set-based writes: callers submit items of data, and `process(session,
    items)` writes a whole batch with a few set-based statements, returning one result per
    item, in order. Only after the COMMIT does each caller get its result.

    No SAVEPOINT per item: `process` must decide every item's fate itself (a duplicate or a
    conflict is a result, not an exception). If it raises anyway, the batch is rolled back and
    - a transient database error (`errors.is_transient`: down, restarting, overloaded) fails every
      caller with `GroupCommitError`, the database's error as its cause;
    - any other error is assumed to come from one bad item: each item is run again alone, in its
      own transaction, so the others commit and only the bad one's caller gets its error.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        process: Process[ItemT, ResultT],
        *,
        max_batch: int = 100,
        max_wait_ms: float = 2.0,
        concurrency: int = 1,
    ) -> None:
        super().__init__(
            sessions, max_batch=max_batch, max_wait_ms=max_wait_ms, concurrency=concurrency
        )
        self._process = process

    async def submit(self, item: ItemT) -> ResultT:
        """Write `item` with the next batch; its result once that batch has committed."""
        result: ResultT = await self._submit(item)
        return result

    async def _commit(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not item.future.done()]
        try:
            if live:
                await self._write(live)
        except Exception as exc:
            if is_transient(exc) or len(live) == 1:
                self._fail(live, exc)
            else:
                for item in live:
                    try:
                        await self._write([item])
                    except Exception as alone:
                        self._fail([item], alone)
        finally:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(GroupCommitError("the batch was abandoned"))

    async def _write(self, items: list[_Item]) -> None:
        async with self._sessions() as session, session.begin():
            results = await self._process(session, [item.work for item in items])
        if len(results) != len(items):
            raise RuntimeError(f"process returned {len(results)} results for {len(items)} items")
        for item, result in zip(items, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    @staticmethod
    def _fail(items: list[_Item], exc: Exception) -> None:
        if is_transient(exc):
            failure: Exception = GroupCommitError(f"the shared transaction did not commit: {exc!r}")
            failure.__cause__ = exc
        else:
            failure = exc
        for item in items:
            if not item.future.done():
                item.future.set_exception(failure)
