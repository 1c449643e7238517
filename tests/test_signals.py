"""signals.py, the wake-ups shared by replicas: in this process, and across processes on one real PostgreSQL,
including after the database drops the listener's connection."""

from __future__ import annotations

import time

import anyio
import psycopg
import pytest

from musicgpt_mcp.signals import PostgresSignals, Signals, open_signals

from .conftest import closed_port

pytestmark = pytest.mark.anyio


async def test_in_process_signals_wake_only_their_channel_and_key() -> None:
    async with open_signals(None) as signals:
        assert type(signals) is Signals
        woken: list[str] = []
        with (
            signals.subscribe("cancel", "a", lambda: woken.append("a")) as a,
            signals.subscribe("cancel", "b", lambda: woken.append("b")),
            signals.subscribe("job", "a", lambda: woken.append("job a")),
        ):
            await signals.publish("cancel", "a")
            with anyio.fail_after(1):
                await a.wait()
            await signals.publish("cancel", "a")
            await signals.publish("cancel", "a")
            await a.wait()  # two signals since the last wait: one wake-up
            assert a.received == 3
        await signals.publish("cancel", "a")  # nobody listens any more: nothing happens
    assert woken == ["a", "a", "a"]


async def test_a_bad_channel_or_key_is_refused() -> None:
    signals = Signals()
    for channel, key in (("Cancel", "a"), ("cancel", "a b"), ("cancel", ""), ("cancel", "x" * 201)):
        with pytest.raises(ValueError, match="bad signal"):
            await signals.publish(channel, key)


async def wait_listening(*hubs: Signals) -> None:
    with anyio.fail_after(10):
        for hub in hubs:
            assert isinstance(hub, PostgresSignals)
            await hub.listening.wait()


async def test_postgres_signals_reach_the_other_replica_once(postgres_url: str) -> None:
    async with open_signals(postgres_url) as first, open_signals(postgres_url) as second:
        await wait_listening(first, second)
        with first.subscribe("cancel", "k1") as here, second.subscribe("cancel", "k1") as there:
            started = time.monotonic()
            await first.publish("cancel", "k1")
            with anyio.fail_after(5):
                await there.wait()
            latency = time.monotonic() - started
            await anyio.sleep(0.3)  # our own NOTIFY comes back to our listener: it must not count twice
            assert (here.received, there.received) == (1, 1)
    assert latency < 1.0


async def test_the_listener_comes_back_after_the_database_drops_it(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_signals(postgres_url) as listener, open_signals(postgres_url) as sender:
        await wait_listening(listener, sender)
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            # Both listeners' connections (nothing was sent yet, so there is no sending one).
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'musicgpt-mcp-signals' AND datname = current_database()"
            )
            assert [row[0] for row in await cursor.fetchall()] == [True, True]
        with listener.subscribe("job", "task-1") as woken:
            with anyio.fail_after(15):  # the listener reconnects after a second; signals sent before are lost
                while woken.received == 0:
                    await sender.publish("job", "task-1")
                    with anyio.move_on_after(0.25):
                        await woken.wait()
    assert caplog.text.count("signals: the listener lost") == 2


async def test_a_database_that_is_down_leaves_signals_local(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing waits on a database that is not there: local subscribers are woken, the rest is logged
    (without the password)."""
    async with open_signals(f"postgresql://u:s3cret-pw@127.0.0.1:{closed_port()}/x") as signals:
        with signals.subscribe("cancel", "k") as woken, anyio.fail_after(10):
            await signals.publish("cancel", "k")
            await woken.wait()
    assert "could not notify the other replicas" in caplog.text
    assert "s3cret-pw" not in caplog.text
