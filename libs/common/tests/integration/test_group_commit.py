"""Group commit against the real PostgreSQL: shared transactions, per-item savepoints, outcomes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from closeloop_common.db import make_engine, make_sessionmaker
from closeloop_common.group_commit import (
    BatchCommitter,
    GroupCommitError,
    GroupCommitter,
    GroupCommitterStopped,
)
from closeloop_common.settings import CommonSettings

SCHEMA = "group_commit_it"


@pytest.fixture
async def engine(infra: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(CommonSettings().database_url, pool_size=3)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.execute(
            sa.text(f"CREATE TABLE {SCHEMA}.writes (id text PRIMARY KEY, txid bigint NOT NULL)")
        )
        # Checked at COMMIT, not at the statement: the way to make a COMMIT itself fail.
        await conn.execute(
            sa.text(
                f"CREATE TABLE {SCHEMA}.deferred (id text, "
                "CONSTRAINT deferred_unique UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


def insert(write_id: str) -> Callable[[AsyncSession], Awaitable[int]]:
    """Work that writes one row and returns the id of the transaction it ran in."""

    async def work(session: AsyncSession) -> int:
        txid: int = (
            await session.execute(
                sa.text(
                    f"INSERT INTO {SCHEMA}.writes (id, txid) VALUES (:id, txid_current()) "
                    "RETURNING txid"
                ),
                {"id": write_id},
            )
        ).scalar_one()
        return txid

    return work


async def committed_ids(engine: AsyncEngine) -> set[str]:
    """Rows visible to a connection of its own, i.e. committed ones."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text(f"SELECT id FROM {SCHEMA}.writes"))
        return {row.id for row in rows}


async def test_concurrent_submits_share_a_few_transactions(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    async with GroupCommitter(sessions, max_batch=100, max_wait_ms=20) as committer:
        txids = await asyncio.gather(*(committer.submit(insert(f"w{i}")) for i in range(50)))
    assert len(set(txids)) <= 3
    assert await committed_ids(engine) == {f"w{i}" for i in range(50)}


async def test_a_batch_never_exceeds_max_batch(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    async with GroupCommitter(sessions, max_batch=10, max_wait_ms=20) as committer:
        txids = await asyncio.gather(*(committer.submit(insert(f"w{i}")) for i in range(50)))
    per_transaction = Counter(txids)
    assert max(per_transaction.values()) <= 10
    assert len(per_transaction) >= 5
    assert len(await committed_ids(engine)) == 50


async def test_a_caller_hears_back_only_once_its_write_is_committed(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    inserted, release = asyncio.Event(), asyncio.Event()

    async def slow(session: AsyncSession) -> int:
        txid = await insert("held")(session)
        inserted.set()
        await release.wait()
        return txid

    async with GroupCommitter(sessions, max_wait_ms=0) as committer:
        held = asyncio.create_task(committer.submit(slow))
        await inserted.wait()
        assert await committed_ids(engine) == set()
        assert not held.done()
        release.set()
        await held
        assert await committed_ids(engine) == {"held"}

        async def submit_and_look(write_id: str) -> bool:
            await committer.submit(insert(write_id))
            return write_id in await committed_ids(engine)

        assert all(await asyncio.gather(*(submit_and_look(f"w{i}") for i in range(20))))


async def test_a_failing_item_rolls_back_only_itself(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    async def insert_then_fail(session: AsyncSession) -> int:
        await insert("half-done")(session)
        raise ValueError("the request's own mistake")

    async with GroupCommitter(sessions, max_wait_ms=20) as committer:
        outcomes = await asyncio.gather(
            committer.submit(insert("first")),
            committer.submit(insert_then_fail),
            committer.submit(insert("first")),  # a unique violation, inside its savepoint
            committer.submit(insert("last")),
            return_exceptions=True,
        )
    first, failed, duplicate, last = outcomes
    assert isinstance(failed, ValueError)
    assert isinstance(duplicate, IntegrityError)
    assert isinstance(first, int)
    assert first == last  # one transaction, in which the neighbours of the failures committed
    assert await committed_ids(engine) == {"first", "last"}


async def test_a_failed_commit_reaches_every_caller(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    def insert_deferred(value: str) -> Callable[[AsyncSession], Awaitable[None]]:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                sa.text(f"INSERT INTO {SCHEMA}.deferred (id) VALUES (:id)"), {"id": value}
            )

        return work

    async with GroupCommitter(sessions, max_wait_ms=20) as committer:
        outcomes = await asyncio.gather(
            committer.submit(insert("bystander")),
            committer.submit(insert_deferred("same")),
            committer.submit(insert_deferred("same")),  # breaks the constraint at COMMIT
            return_exceptions=True,
        )
        assert all(
            isinstance(outcome, GroupCommitError) and isinstance(outcome.__cause__, IntegrityError)
            for outcome in outcomes
        ), outcomes
        assert await committed_ids(engine) == set()
        # The committer goes on after a failed commit.
        await committer.submit(insert("after"))
    assert await committed_ids(engine) == {"after"}


async def test_a_cancelled_caller_leaves_the_batch_going(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def holds_the_worker(session: AsyncSession) -> int:
        started.set()
        await release.wait()
        return await insert("holder")(session)

    async with GroupCommitter(sessions, max_wait_ms=0) as committer:
        holder = asyncio.create_task(committer.submit(holds_the_worker))
        await started.wait()
        # Queued behind the running batch; its caller gives up before it starts.
        gone = asyncio.create_task(committer.submit(insert("gone")))
        waiting = asyncio.create_task(committer.submit(insert("waiting")))
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        assert isinstance(await holder, int)
        assert isinstance(await waiting, int)
        with pytest.raises(asyncio.CancelledError):
            await gone
    assert await committed_ids(engine) == {"holder", "waiting"}


async def test_stop_commits_what_was_submitted_and_refuses_more(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    committer = GroupCommitter(sessions, max_batch=5, max_wait_ms=20)
    await committer.start()
    pending = [asyncio.create_task(committer.submit(insert(f"w{i}"))) for i in range(12)]
    await asyncio.sleep(0)  # every submit is queued
    await committer.stop()
    assert all(task.done() and isinstance(task.result(), int) for task in pending)
    assert len(await committed_ids(engine)) == 12
    with pytest.raises(GroupCommitterStopped):
        await committer.submit(insert("late"))


# --- BatchCommitter: set-based writes ----------------------------------------------------------


async def insert_all(session: AsyncSession, ids: Sequence[str]) -> list[int]:
    """One statement for the whole batch; the transaction id for each item."""
    rows = await session.execute(
        sa.text(
            f"INSERT INTO {SCHEMA}.writes (id, txid) "
            "SELECT i, txid_current() FROM unnest(CAST(:ids AS text[])) AS u(i) RETURNING txid"
        ),
        {"ids": list(ids)},
    )
    return [row.txid for row in rows]


async def test_a_batch_is_one_statement_and_one_commit_answered_after_it(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    batches: list[int] = []

    async def process(session: AsyncSession, ids: Sequence[str]) -> list[int]:
        batches.append(len(ids))
        return await insert_all(session, ids)

    async with BatchCommitter(sessions, process, max_batch=50, max_wait_ms=20) as committer:
        txids = await asyncio.gather(*(committer.submit(f"b{i}") for i in range(120)))
    assert await committed_ids(engine) == {f"b{i}" for i in range(120)}
    assert max(batches) <= 50
    assert len(set(txids)) == len(batches) < 10


async def test_a_batch_that_fails_is_retried_item_by_item_so_only_the_bad_item_fails(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    async with BatchCommitter(sessions, insert_all, max_wait_ms=20) as committer:
        outcomes = await asyncio.gather(
            committer.submit("ok-1"),
            committer.submit("x" * 3 + "\x00"),  # PostgreSQL refuses a NUL in text
            committer.submit("ok-2"),
            return_exceptions=True,
        )
    ok_1, bad, ok_2 = outcomes
    assert isinstance(ok_1, int)
    assert isinstance(ok_2, int)
    assert isinstance(bad, Exception)
    assert not isinstance(bad, GroupCommitError)
    assert await committed_ids(engine) == {"ok-1", "ok-2"}


async def test_a_transient_failure_reaches_every_caller_as_a_group_commit_error(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    async def database_gone(session: AsyncSession, ids: Sequence[str]) -> list[int]:
        await session.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return []

    async with BatchCommitter(sessions, database_gone, max_wait_ms=20) as committer:
        outcomes = await asyncio.gather(
            committer.submit("a"), committer.submit("b"), return_exceptions=True
        )
    assert all(isinstance(o, GroupCommitError) for o in outcomes), outcomes
    assert await committed_ids(engine) == set()


async def test_with_two_slots_a_batch_is_prepared_while_the_one_before_it_commits(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    in_flight = 0
    most = 0
    release = asyncio.Event()

    async def slow(session: AsyncSession, ids: Sequence[str]) -> list[int]:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await release.wait()
            return await insert_all(session, ids)
        finally:
            in_flight -= 1

    async with BatchCommitter(sessions, slow, max_batch=5, concurrency=2) as committer:
        submitted = [asyncio.create_task(committer.submit(f"c{i}")) for i in range(15)]
        await asyncio.sleep(0.2)
        assert most == 2  # two batches in flight, the third waits for a slot
        release.set()
        await asyncio.gather(*submitted)
    assert await committed_ids(engine) == {f"c{i}" for i in range(15)}


async def test_stop_waits_for_every_batch_in_flight(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    async def slow(session: AsyncSession, ids: Sequence[str]) -> list[int]:
        await asyncio.sleep(0.1)
        return await insert_all(session, ids)

    committer = BatchCommitter(sessions, slow, max_batch=2, concurrency=3)
    await committer.start()
    submitted = [asyncio.create_task(committer.submit(f"s{i}")) for i in range(6)]
    await asyncio.sleep(0.01)
    await committer.stop()
    assert [t.done() for t in submitted] == [True] * 6
    assert await committed_ids(engine) == {f"s{i}" for i in range(6)}
