"""What only the PostgreSQL ledger must do: hold its rules across replicas, migrate once when replicas start
together, and fail with a readable reason that never shows the password.

Two `open_ledger` calls on one URL are two replicas: two connection pools, two sets of server sessions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from mcp import Client
from psycopg import sql
from pydantic import SecretStr

from musicgpt_mcp.config import Remote, Settings
from musicgpt_mcp.ledger import (
    Accepted,
    Claimed,
    ClaimResult,
    FileKey,
    InFlight,
    JobRequest,
    Ledger,
    LedgerError,
    LimitReached,
    Policy,
    Reused,
    open_ledger,
)
from musicgpt_mcp.ledger.base import HOUR, STALE_CLAIM
from musicgpt_mcp.ledger.postgres import SCHEMA_VERSION, PostgresLedger
from musicgpt_mcp.sandbox import Sandbox
from tests.conftest import REPO, closed_port, connect, make_settings
from tests.support.postgres import PostgresServer
from tests.test_ledger import posts, structured
from tests.test_status import text_of

pytestmark = pytest.mark.anyio

POLICY = Policy(reuse_seconds=HOUR, max_credits_per_day=None, max_jobs_per_hour=1000)
ROUNDS = 8
PER_REPLICA = 6


def req(fingerprint: str, owner: str = "alice") -> JobRequest:
    return JobRequest(owner, "acct-1", fingerprint, "url", fingerprint, ("vocals",), ())


@pytest.fixture
async def replicas(postgres_url: str, tmp_path: Path) -> AsyncIterator[tuple[Ledger, Ledger]]:
    first = await open_ledger(tmp_path, database_url=postgres_url)
    second = await open_ledger(tmp_path, database_url=postgres_url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def race(calls: list[tuple[Ledger, JobRequest, Policy]]) -> list[ClaimResult]:
    """All claims at once, interleaved across the replicas."""
    now = time.time()
    return list(await asyncio.gather(*(ledger.claim(request, policy, now) for ledger, request, policy in calls)))


# --- atomic across replicas ---------------------------------------------------------------------------------


async def test_identical_claims_racing_on_two_replicas_make_exactly_one_claim(
    replicas: tuple[Ledger, Ledger],
) -> None:
    a, b = replicas
    for n in range(ROUNDS):
        request = req(f"url:https://example.com/song-{n}.mp3")
        results = await race([(replica, request, POLICY) for _ in range(PER_REPLICA) for replica in (a, b)])
        claims = [r for r in results if isinstance(r, Claimed)]
        assert len(claims) == 1, results
        assert all(isinstance(r, InFlight) and r.job.id == claims[0].job_id for r in results if r is not claims[0])
    assert len(await a.jobs("alice", 100, None, None)) == ROUNDS


async def test_a_job_accepted_on_one_replica_is_reused_on_the_other(replicas: tuple[Ledger, Ledger]) -> None:
    a, b = replicas
    claim = await a.claim(req("url:x"), POLICY, time.time())
    assert isinstance(claim, Claimed)
    await a.accepted(claim.job_id, Accepted("task-1", None, 30, 1.0))
    results = await race([(replica, req("url:x"), POLICY) for _ in range(PER_REPLICA) for replica in (a, b)])
    assert all(isinstance(r, Reused) and r.job.task_id == "task-1" for r in results), results


async def test_different_songs_racing_under_a_limit_of_one_job_an_hour_make_exactly_one_claim(
    replicas: tuple[Ledger, Ledger],
) -> None:
    a, b = replicas
    one = Policy(reuse_seconds=HOUR, max_credits_per_day=None, max_jobs_per_hour=1)
    for n in range(ROUNDS):
        # Every request is a different song: nothing to reuse or wait for, only the limit decides.
        results = await race([((a, b)[i % 2], req(f"url:song-{i}", f"user-{n}"), one) for i in range(2 * PER_REPLICA)])
        assert sum(isinstance(r, Claimed) for r in results) == 1, results
        assert all(r == LimitReached("jobs", 1, 1) for r in results if not isinstance(r, Claimed)), results


async def test_a_limit_of_three_lets_exactly_three_through_across_replicas(replicas: tuple[Ledger, Ledger]) -> None:
    a, b = replicas
    three = Policy(reuse_seconds=HOUR, max_credits_per_day=None, max_jobs_per_hour=3)
    results = await race([((a, b)[i % 2], req(f"url:song-{i}"), three) for i in range(2 * PER_REPLICA)])
    assert sum(isinstance(r, Claimed) for r in results) == 3, results


async def test_claims_stay_atomic_when_the_database_defaults_to_repeatable_read(
    postgres_url: str, tmp_path: Path
) -> None:
    """Under REPEATABLE READ a claim's snapshot would predate its wait for the lock and miss the other
    replica's claim; the ledger sets READ COMMITTED on its connections whatever the database says."""
    await default_to_repeatable_read(postgres_url)
    a = await open_ledger(tmp_path, database_url=postgres_url)
    b = await open_ledger(tmp_path, database_url=postgres_url)
    try:
        for n in range(ROUNDS):
            request = req(f"url:rr-{n}")
            results = await race([(replica, request, POLICY) for _ in range(PER_REPLICA) for replica in (a, b)])
            assert sum(isinstance(r, Claimed) for r in results) == 1, results
    finally:
        await a.close()
        await b.close()


async def test_an_outcome_recorded_while_a_claim_decides_is_not_overwritten(postgres_url: str, tmp_path: Path) -> None:
    """A slow submitter's claim looks dead; the very moment another replica decides so, the submitter records
    MusicGPT's acceptance. The decision must wait for that write and see it, not mark the paid job unknown."""

    ledger = await open_ledger(tmp_path, database_url=postgres_url)
    try:
        t0 = time.time()
        claim = await ledger.claim(req("url:slow"), POLICY, t0)
        assert isinstance(claim, Claimed)
        async with await psycopg.AsyncConnection.connect(postgres_url) as submitter:
            # The submitter's `accepted`, caught half-way: written, not yet committed.
            await submitter.execute(
                "UPDATE musicgpt_mcp_jobs SET state = 'submitted', task_id = 'task-1', heartbeat_at = NULL "
                "WHERE id = %s",
                (claim.job_id,),
            )
            async with anyio.create_task_group() as tg:
                decided: list[ClaimResult] = []

                async def decide() -> None:
                    decided.append(await ledger.claim(req("url:slow"), POLICY, t0 + STALE_CLAIM + 5))

                tg.start_soon(decide)
                async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as observer:
                    with anyio.fail_after(20):
                        while True:  # the server itself says the decision waits on the submitter's row
                            cursor = await observer.execute(
                                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'musicgpt-mcp' "
                                "AND wait_event_type = 'Lock'"
                            )
                            if ((await cursor.fetchone()) or (0,))[0] == 1:
                                break
                            await anyio.sleep(0.02)
                assert decided == []
                await submitter.commit()
        (result,) = decided
        assert isinstance(result, Reused), result
        job = await ledger.job("alice", "task-1")
        assert job is not None
        assert (job.id, job.state) == (claim.job_id, "submitted")
    finally:
        await ledger.close()


# --- through the protocol: two servers on one database ------------------------------------------------------


def on_database(sandbox: Sandbox, url: str, **overrides: Any) -> Settings:
    return make_settings(sandbox, remote=Remote(database_url=SecretStr(url)), **overrides)


async def test_identical_extractions_on_two_servers_sharing_the_database_make_one_post(
    sandbox: Sandbox, song: Path, postgres_url: str
) -> None:
    sandbox.state.submit_delay = 0.5  # every call arrives while the first POST is in the air
    results: list[dict[str, Any]] = []
    # Each server its own state folder: only the database is shared, as on two machines.
    async with connect(on_database(sandbox, postgres_url)) as a, connect(on_database(sandbox, postgres_url)) as b:

        async def one(client: Client) -> None:
            results.append(
                structured(await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["drums"]}))
            )

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one, a)
                tg.start_soon(one, b)
    assert posts(sandbox) == 1
    assert len({r["task_id"] for r in results}) == 1
    assert sorted(r["reused"] for r in results) == [False] + [True] * 9


async def test_a_limit_reached_through_one_server_holds_on_the_other_and_both_list_the_job(
    sandbox: Sandbox, postgres_url: str
) -> None:
    settings = {"max_jobs_per_hour": 1}
    async with (
        connect(on_database(sandbox, postgres_url, **settings)) as a,
        connect(on_database(sandbox, postgres_url, **settings)) as b,
    ):
        first = structured(await a.call_tool("extract_stems", {"audio_url": "https://example.com/one.mp3"}))
        refused = await b.call_tool("extract_stems", {"audio_url": "https://example.com/two.mp3"})
        assert refused.is_error
        assert "MUSICGPT_MCP_MAX_JOBS_PER_HOUR" in text_of(refused)
        listed = structured(await b.call_tool("list_extractions", {}))
        assert [j["task_id"] for j in listed["extractions"]] == [first["task_id"]]
        looked = structured(await b.call_tool("get_extraction", {"task_id": first["task_id"]}))
        assert looked["task_id"] == first["task_id"]
    assert posts(sandbox) == 1


async def counted_calls(url: str) -> dict[str, int]:
    """The calls to MusicGPT the replicas have counted in the database, by bucket."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT bucket, count(*) FROM musicgpt_mcp_rate_calls GROUP BY bucket")
        return {str(bucket): int(n) for bucket, n in await cursor.fetchall()}


async def test_two_servers_sharing_the_database_count_musicgpt_calls_in_one_budget(
    sandbox: Sandbox, postgres_url: str
) -> None:
    """MusicGPT's per-key rate limits must hold in sum across replicas: both servers count their calls in the
    database, in one bucket per kind of call for the account (never the key)."""
    async with connect(on_database(sandbox, postgres_url)) as a, connect(on_database(sandbox, postgres_url)) as b:
        job = structured(await a.call_tool("extract_stems", {"audio_url": "https://example.com/one.mp3"}))
        submitted = await counted_calls(postgres_url)
        await a.call_tool("get_extraction", {"task_id": job["task_id"]})
        after_a = await counted_calls(postgres_url)
        await b.call_tool("get_extraction", {"task_id": job["task_id"]})
        after_b = await counted_calls(postgres_url)
    assert [bucket.split(":")[0] for bucket in submitted] == ["submit"]
    assert list(submitted.values()) == [1]
    status = [bucket for bucket in after_b if bucket.startswith("status:")]
    assert len(status) == 1, after_b
    assert after_b[status[0]] > after_a.get(status[0], 0) > submitted.get(status[0], 0)
    assert all(sandbox.api_key not in bucket for bucket in after_b)


# --- migrations ------------------------------------------------------------------------------------------------


async def default_to_repeatable_read(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        name = (await (await conn.execute("SELECT current_database()")).fetchone() or ("",))[0]
        await conn.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'").format(
                sql.Identifier(name)
            )
        )


@pytest.mark.parametrize("isolation", ["database default", "repeatable read"])
async def test_replicas_starting_together_migrate_exactly_once(
    postgres_url: str, tmp_path: Path, isolation: str
) -> None:
    if isolation == "repeatable read":
        # A snapshot taken before the wait for the migration lock would not see the first replica's work.
        await default_to_repeatable_read(postgres_url)
    with anyio.fail_after(60):
        opened = await asyncio.gather(
            *(open_ledger(tmp_path, database_url=postgres_url) for _ in range(8)), return_exceptions=True
        )
    ledgers = [ledger for ledger in opened if not isinstance(ledger, BaseException)]
    try:
        assert len(ledgers) == len(opened), [str(e) for e in opened if isinstance(e, BaseException)]
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            cursor = await conn.execute("SELECT version FROM musicgpt_mcp_schema ORDER BY version")
            assert [r[0] for r in await cursor.fetchall()] == list(range(1, SCHEMA_VERSION + 1))
        # Every one of them works on the schema the first one made.
        for n, ledger in enumerate(ledgers):
            assert isinstance(await ledger.claim(req(f"url:{n}"), POLICY, time.time()), Claimed)
        assert len(await ledgers[0].jobs("alice", 100, None, None)) == len(ledgers)
    finally:
        for ledger in ledgers:
            await ledger.close()


async def test_reopening_a_migrated_database_keeps_its_jobs(postgres_url: str, tmp_path: Path) -> None:
    first = await open_ledger(tmp_path, database_url=postgres_url)
    await first.claim(req("url:kept"), POLICY, time.time())
    await first.close()
    again = await open_ledger(tmp_path, database_url=postgres_url)
    try:
        assert [j.fingerprint for j in await again.jobs("alice", 10, None, None)] == ["url:kept"]
    finally:
        await again.close()


async def test_a_database_migrated_by_a_newer_release_is_refused(postgres_url: str, tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path, database_url=postgres_url)
    await ledger.close()
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO musicgpt_mcp_schema (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(LedgerError, match="newer musicgpt-mcp"):
        await open_ledger(tmp_path, database_url=postgres_url)


# --- what an operator sees when the URL is wrong -------------------------------------------------------------


async def opening_fails(url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> str:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LedgerError) as caught:
        await open_ledger(tmp_path, database_url=url)
    return str(caught.value)


async def test_a_wrong_password_is_named_without_showing_any_password(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wr0ng-pa55word-7c1e"
    url = postgres_url.replace(postgres_server.password, wrong)
    message = await opening_fails(url, tmp_path, caplog)
    assert "password authentication failed" in message
    assert f"{postgres_server.user}@127.0.0.1:{postgres_server.port}" in message
    for secret in (wrong, postgres_server.password):
        assert secret not in message
        assert secret not in caplog.text


async def test_an_unreachable_server_is_named(
    postgres_server: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    url = f"postgresql://{postgres_server.user}:{postgres_server.password}@127.0.0.1:{port}/db"
    message = await opening_fails(url, tmp_path, caplog)
    assert f"127.0.0.1:{port}" in message
    assert "refused" in message.lower()
    assert postgres_server.password not in message + caplog.text


async def test_a_missing_database_is_named(
    postgres_server: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    message = await opening_fails(postgres_server.url("no_such_db"), tmp_path, caplog)
    assert 'database "no_such_db" does not exist' in message
    assert postgres_server.password not in message + caplog.text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://user:S3cret-Pw@db.example/stems", "not PostgreSQL"),
        ("postgresql://user:S3cret Pw@db.example:5432/stems", "cannot be read"),
        ("postgresql://user:S3cret-Pw@db.example:5432/stems?colour=blue", "cannot be read"),
        ("host=db.example password=S3cret-Pw nonsense", "cannot be read"),
        ("   ", "empty"),
    ],
)
async def test_an_unreadable_url_is_refused_without_echoing_it(
    url: str, reason: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    message = await opening_fails(url, tmp_path, caplog)
    assert reason in message
    assert "postgresql://user:password@host:port/database" in message
    assert "S3cret" not in message
    assert "S3cret" not in caplog.text


async def test_where_names_the_database_without_the_password(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    ledger = await open_ledger(tmp_path, database_url=postgres_url)
    try:
        assert ledger.where.startswith(f"postgresql://{postgres_server.user}@127.0.0.1:{postgres_server.port}/")
        assert postgres_server.password not in ledger.where
    finally:
        await ledger.close()


# --- staying up --------------------------------------------------------------------------------------------------


async def test_connections_the_server_dropped_are_replaced_before_use(postgres_url: str, tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path, database_url=postgres_url)
    try:
        await ledger.claim(req("url:before"), POLICY, time.time())
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'musicgpt-mcp' AND pid <> pg_backend_pid()"
            )
            assert ((await cursor.fetchone()) or (0,))[0] >= 1
        assert [j.fingerprint for j in await ledger.jobs("alice", 10, None, None)] == ["url:before"]
    finally:
        await ledger.close()


async def test_a_failing_database_is_a_ledger_error(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    """What the paid path turns into "nothing was submitted": a LedgerError, not a driver exception."""
    ledger = await open_ledger(tmp_path, database_url=postgres_url)
    try:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            await admin.execute("ALTER TABLE musicgpt_mcp_jobs RENAME TO musicgpt_mcp_jobs_gone")
        with pytest.raises(LedgerError, match=r"could not be used.*musicgpt_mcp_jobs") as caught:
            await ledger.claim(req("url:gone"), POLICY, time.time())
        assert postgres_server.password not in str(caught.value)
    finally:
        await ledger.close()


async def test_the_health_check_fails_soon_when_the_database_is_gone(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    name = postgres_server.unique_name("gone")
    ledger = await open_ledger(tmp_path, database_url=postgres_server.create_database(name))
    try:
        await ledger.check()
        postgres_server.drop_database(name)  # WITH (FORCE): the pool's sessions end too
        began = time.monotonic()
        with pytest.raises(LedgerError) as caught:
            await ledger.check()
        assert time.monotonic() - began < 5.0 + 5  # CHECK_TIMEOUT, not the paid path's 15 s
        assert postgres_server.password not in str(caught.value)
    finally:
        await ledger.close()


async def test_fingerprints_are_remembered_per_machine(postgres_url: str, tmp_path: Path) -> None:
    """Device and inode numbers mean nothing on another machine: a replica elsewhere must hash for itself."""
    ledger = await open_ledger(tmp_path, database_url=postgres_url)
    try:
        key = FileKey(dev=64769, ino=1234, size=10, mtime_ns=1, ctime_ns=2)
        await ledger.remember_fingerprint(key, "sha256:here")
        assert await ledger.cached_fingerprint(key) == "sha256:here"
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute("UPDATE musicgpt_mcp_fingerprints SET host = 'another-machine'")
        assert await ledger.cached_fingerprint(key) is None
    finally:
        await ledger.close()


# --- psycopg only when PostgreSQL is used ------------------------------------------------------------------------

_WITHOUT_PSYCOPG = """
import importlib.abc, pathlib, sys, tempfile
tried = []
class NoPsycopg(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("psycopg", "psycopg_pool", "psycopg_binary"):
            tried.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoPsycopg())

import anyio
import musicgpt_mcp.cli
from musicgpt_mcp.config import Settings
from musicgpt_mcp.ledger import Claimed, JobRequest, LedgerError, Policy, open_ledger
from musicgpt_mcp.server import create_server

async def main():
    create_server(Settings(api_key=None, state_dir=pathlib.Path(tempfile.mkdtemp())))
    ledger = await open_ledger(pathlib.Path(tempfile.mkdtemp()))
    request = JobRequest("local", "acct", "url:x", "url", "x", ("vocals",), ())
    assert isinstance(await ledger.claim(request, Policy(3600, None, 30), 1.0), Claimed)
    await ledger.close()
    print("stdio tried to import:", tried)
    try:
        await open_ledger(pathlib.Path(tempfile.mkdtemp()), database_url="postgresql://u:Pw-9z@127.0.0.1:1/db")
    except LedgerError as exc:
        print("postgres:", exc)

anyio.run(main)
"""


def test_without_the_extra_stdio_never_imports_psycopg_and_postgres_says_what_to_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "XDG_STATE_HOME", "TMPDIR")}
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PSYCOPG], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "stdio tried to import: []" in lines
    (postgres,) = (line for line in lines if line.startswith("postgres: "))
    assert "musicgpt-mcp[postgres]" in postgres
    assert "Pw-9z" not in done.stdout + done.stderr


async def test_the_pool_is_a_postgres_ledger_with_its_own_sessions(replicas: tuple[Ledger, Ledger]) -> None:
    """Guards the race tests above: two replicas really are two pools with their own server sessions."""
    a, b = replicas
    assert isinstance(a, PostgresLedger)
    assert isinstance(b, PostgresLedger)
    assert a.pool is not b.pool
    async with a.pool.connection() as one, b.pool.connection() as other:
        assert one.info.backend_pid != other.info.backend_pid
