"""Wake-ups across the replicas of one server: `publish(channel, key)` wakes whoever `subscribe`d to that
channel and key, in this process and, when replicas share a PostgreSQL database, in every other replica.

Used for a 2025-era client's `notifications/cancelled`, which a load balancer may hand to another replica
than the request it cancels (cancellation.py), and for waking a job's waiters on every replica when MusicGPT's
webhook reaches one of them (deliveries.py, watching.py).

Without a database URL (SQLite: one machine, and a stdio server is one process per client) signals stay in
this process. With one, PostgreSQL LISTEN/NOTIFY on a single database channel carries them: a dedicated
autocommit connection listens and nothing polls; every CHECK_EVERY seconds of silence it runs one query to
find a connection the network dropped without a word, and it reconnects (backing off) whenever the database
drops it. A second connection sends. A signal is a fire-and-forget wake-up, not a message queue: one sent
while a listener is reconnecting is lost to that replica (PostgreSQL keeps none), so a subscriber that must
not miss one keeps a slower check of its own. Subscribers in the publishing process are woken at once,
whatever the database's state.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Final

import anyio

if TYPE_CHECKING:
    from psycopg import AsyncConnection

log = logging.getLogger(__name__)

PG_CHANNEL: Final = "musicgpt_mcp_signals"
# NOTIFY payloads must stay under 8000 bytes; ours are "<origin> <channel> <key>".
_CHANNEL: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
_KEY: Final = re.compile(r"[\x21-\x7e]{1,200}")
CHECK_EVERY: Final = 60.0  # seconds without a notification before the listener checks its connection
CHECK_TIMEOUT: Final = 10.0
PUBLISH_TIMEOUT: Final = 5.0
MAX_BACKOFF: Final = 30.0


class Subscription:
    """One subscriber's wake-ups: `wait()` returns once a signal came since the last `wait()` returned
    (several in between count as one), and `on_signal`, if given, runs as each arrives."""

    def __init__(self, on_signal: Callable[[], object] | None = None) -> None:
        self._event = anyio.Event()
        self._on_signal = on_signal
        self.received = 0

    def fire(self) -> None:
        self.received += 1
        self._event.set()
        if self._on_signal is not None:
            try:
                self._on_signal()
            except Exception:  # one subscriber's failure must not stop delivery to the others
                log.exception("a signal subscriber failed")

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()


def _check(channel: str, key: str) -> None:
    if not _CHANNEL.fullmatch(channel) or not _KEY.fullmatch(key):
        raise ValueError(f"bad signal channel or key: {channel[:40]!r} {key[:40]!r}")


class Signals:
    """Signals within this process: the whole of it without a database, and the local half with one."""

    kind = "process"

    def __init__(self) -> None:
        self._subscribers: dict[tuple[str, str], list[Subscription]] = {}

    @contextmanager
    def subscribe(
        self, channel: str, key: str, on_signal: Callable[[], object] | None = None
    ) -> Iterator[Subscription]:
        _check(channel, key)
        subscription = Subscription(on_signal)
        listed = self._subscribers.setdefault((channel, key), [])
        listed.append(subscription)
        try:
            yield subscription
        finally:
            listed.remove(subscription)
            if not listed:
                self._subscribers.pop((channel, key), None)

    async def publish(self, channel: str, key: str) -> None:
        _check(channel, key)
        self.deliver(channel, key)

    def deliver(self, channel: str, key: str) -> None:
        for subscription in list(self._subscribers.get((channel, key), ())):
            subscription.fire()


class PostgresSignals(Signals):
    """Signals for every replica on one PostgreSQL database (see the module's docstring)."""

    kind = "postgresql"

    def __init__(self, conninfo: str, where: str, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._conninfo = conninfo
        self._where = where
        self._redact = redact
        # Our own NOTIFYs come back to our listener: this tells them apart (they were delivered already).
        self._origin = secrets.token_hex(8)
        self._sender: AsyncConnection[Any] | None = None
        self._send_lock = anyio.Lock()
        self.listening = anyio.Event()  # set once the listener first listens (tests wait for it)

    async def publish(self, channel: str, key: str) -> None:
        _check(channel, key)
        self.deliver(channel, key)
        payload = f"{self._origin} {channel} {key}"
        async with self._send_lock:
            for attempt in (1, 2):  # a connection the database dropped since the last signal: once more, anew
                try:
                    with anyio.fail_after(PUBLISH_TIMEOUT):
                        sender = self._sender or await self._connect()
                        self._sender = sender
                        await sender.execute("SELECT pg_notify(%s, %s)", (PG_CHANNEL, payload))
                    return
                except Exception as exc:  # psycopg's errors, a timeout, a refused connection
                    await self._drop_sender()
                    if attempt == 2:
                        log.warning("signals: could not notify the other replicas: %s", self._why(exc))

    async def listen(self) -> None:
        """Listen until cancelled, reconnecting (1 s, 2 s, ... up to 30 s apart) whenever the database drops us."""
        backoff = 1.0
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {PG_CHANNEL}")
                    if backoff > 1.0:
                        log.info("signals: listening on %s again", self._where)
                    backoff = 1.0
                    self.listening.set()
                    await self._receive(conn)
            except Exception as exc:  # whatever it was, the listener must live on (cancellation is not caught)
                log.warning(
                    "signals: the listener lost %s (%s); reconnecting in %.0f s", self._where, self._why(exc), backoff
                )
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _receive(self, conn: AsyncConnection[Any]) -> None:
        while True:
            async for note in conn.notifies(timeout=CHECK_EVERY):
                self._on_payload(note.payload)
            # Quiet for a while: make sure the connection still answers (notifications that arrive meanwhile
            # wait in psycopg's backlog and come out of the next notifies()).
            with anyio.fail_after(CHECK_TIMEOUT):
                await conn.execute("SELECT 1")

    def _on_payload(self, payload: str) -> None:
        origin, _, rest = payload.partition(" ")
        channel, _, key = rest.partition(" ")
        if origin == self._origin or not _CHANNEL.fullmatch(channel) or not _KEY.fullmatch(key):
            return
        self.deliver(channel, key)

    async def _connect(self) -> AsyncConnection[Any]:
        from psycopg import AsyncConnection

        return await AsyncConnection.connect(self._conninfo, autocommit=True)

    async def _drop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await sender.close()

    def _why(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return "no answer in time"
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return self._redact("; ".join(lines) or type(exc).__name__)

    async def aclose(self) -> None:
        async with self._send_lock:
            await self._drop_sender()


@asynccontextmanager
async def open_signals(database_url: str | None) -> AsyncIterator[Signals]:
    """The signals for this process: in-process without a database URL, else PostgreSQL's, listening in
    the background until the block ends. A database that is down delays nothing: the listener keeps
    trying, and publishing still wakes this process's subscribers."""
    signals = _postgres(database_url) if database_url is not None else None
    if signals is None:
        yield Signals()
        return
    async with anyio.create_task_group() as tg:
        tg.start_soon(signals.listen)
        try:
            yield signals
        finally:
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await signals.aclose()


def _postgres(database_url: str) -> PostgresSignals | None:
    from .ledger import LedgerError

    try:
        from psycopg.conninfo import make_conninfo

        # The ledger's own reading of the URL: its defaults, its password-free name, its redaction.
        from .ledger.postgres_url import read_url, redactor

        conninfo, where = read_url(database_url)
    except (ImportError, LedgerError) as exc:
        # The ledger tells every tool call the same; meanwhile signals reach this process only.
        log.error("signals: only within this process: %s", exc)
        return None
    conninfo = make_conninfo(conninfo, application_name="musicgpt-mcp-signals")
    return PostgresSignals(conninfo, where, redactor(database_url))


__all__ = ["PG_CHANNEL", "PostgresSignals", "Signals", "Subscription", "open_signals"]
