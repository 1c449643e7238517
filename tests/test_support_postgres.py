"""The PostgreSQL fixture is a real server: password authentication, fresh databases, row locks between sessions."""

from __future__ import annotations

import anyio
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.anyio


async def test_server_is_postgresql_15_or_later_and_checks_passwords(postgres_server: PostgresServer) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_server.url()) as conn:
        row = await (await conn.execute("SHOW server_version_num")).fetchone()
        assert row is not None
        assert int(row[0]) >= 150000
    wrong = postgres_server.url().replace(postgres_server.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        await psycopg.AsyncConnection.connect(wrong, connect_timeout=10)


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_gets_its_own_empty_database(postgres_url: str, run: int) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert await cur.fetchone() == (0,)
        # Would fail on the second run if the database were shared.
        await conn.execute("CREATE TABLE marker (run int)")
        name = await (await conn.execute("SELECT current_database()")).fetchone()
        assert name is not None
        assert name[0] not in ("postgres", "template0", "template1")


async def test_select_for_update_makes_a_second_connection_wait(postgres_url: str) -> None:
    """Two pooled connections contend for one row: the second waits on the first's lock, then sees its write."""
    async with AsyncConnectionPool(postgres_url, min_size=3, max_size=3, open=False) as pool:
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)")
            await conn.execute("INSERT INTO counters VALUES (1, 0)")

        seen_by_second: list[int] = []
        second_pid: list[int] = []

        async def second() -> None:
            async with pool.connection() as conn:
                second_pid.append(conn.info.backend_pid)
                async with conn.transaction():
                    cur = await conn.execute("SELECT n FROM counters WHERE id = 1 FOR UPDATE")
                    row = await cur.fetchone()
                    assert row is not None
                    seen_by_second.append(row[0])
                    await conn.execute("UPDATE counters SET n = n + 1 WHERE id = 1")

        async with pool.connection() as first, pool.connection() as observer:
            async with anyio.create_task_group() as tg, first.transaction():
                await first.execute("SELECT n FROM counters WHERE id = 1 FOR UPDATE")
                tg.start_soon(second)
                # The server itself says the second session is blocked on a lock (no sleeping and hoping).
                with anyio.fail_after(20):
                    while True:
                        if second_pid:
                            cur = await observer.execute(
                                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (second_pid[0],)
                            )
                            row = await cur.fetchone()
                            if row is not None and row[0] == "Lock":
                                break
                        await anyio.sleep(0.02)
                assert seen_by_second == []
                await first.execute("UPDATE counters SET n = n + 10 WHERE id = 1")
                # The first transaction committed: the second gets the row as the first left it.
            assert seen_by_second == [10]
            cur = await observer.execute("SELECT n FROM counters WHERE id = 1")
            assert await cur.fetchone() == (11,)
