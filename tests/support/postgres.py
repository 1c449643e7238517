"""A throwaway PostgreSQL server for tests: `initdb` into a temporary folder, `pg_ctl` on a loopback port.

The server is real (the same binaries an operator runs), reached over TCP with password (SCRAM) authentication,
like a production `MUSICGPT_MCP_DATABASE_URL`. Durability is switched off (fsync, full-page writes): the folder is
deleted afterwards, and it keeps start-up and `CREATE DATABASE` fast.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as an unprivileged user (`postgres`,
which the Debian/Ubuntu packages create, else `nobody`) through `subprocess`'s own `user=`/`group=` switch, and
the temporary folder is handed to that user. As a normal user it runs as that user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

logger = logging.getLogger(__name__)

# Debian and Ubuntu install the server programs here, outside PATH (only the client wrappers are on PATH).
_DEBIAN_BIN = Path("/usr/lib/postgresql")
_USER = "musicgpt"
# Users that may run the server when the tests run as root, in order of preference.
_UNPRIVILEGED = ("postgres", "nobody")


def find_bin_dir() -> Path | None:
    """The folder holding `initdb`, `pg_ctl` and `postgres`, or None when PostgreSQL is not installed."""
    initdb = shutil.which("initdb")
    if initdb:
        # /usr/local/bin/initdb may be a symbolic link into the real folder, where pg_ctl and postgres live too.
        folder = Path(initdb).resolve().parent
        if (folder / "pg_ctl").exists() and (folder / "postgres").exists():
            return folder
    versions = sorted(
        (p for p in _DEBIAN_BIN.glob("*/bin") if (p / "initdb").exists() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    return versions[-1] if versions else None


def server_version(bin_dir: Path) -> tuple[int, int]:
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    if not match:
        raise RuntimeError(f"cannot read the PostgreSQL version from {out!r}")
    return int(match.group(1)), int(match.group(2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, listening on 127.0.0.1.

    `url()` gives a `postgresql://` URL (user, password, host, port, database); `create_database()` makes a fresh,
    empty database cheaply (`CREATE DATABASE ... TEMPLATE`), `drop_database()` removes it with any connection left.
    """

    def __init__(self, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb on PATH nor under /usr/lib/postgresql)")
        self.bin_dir = found
        self.user = _USER
        self.password = "pw-" + secrets.token_urlsafe(12)
        self.host = "127.0.0.1"
        self.port = 0
        self.folder: Path | None = None
        self.startup_seconds = 0.0
        self._run_as: tuple[int, int] | None = None
        self._counter = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def data_dir(self) -> Path:
        assert self.folder is not None, "the server is not started"
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        assert self.folder is not None, "the server is not started"
        return self.folder / "server.log"

    def start(self, attempts: int = 3) -> PostgresServer:
        began = time.perf_counter()
        self._run_as = _unprivileged_ids() if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="musicgpt-pg-"))
        try:
            if self._run_as is not None:
                os.chown(self.folder, *self._run_as)
            self._initdb()
            # The port is picked free and then bound by the server: another process may take it in between.
            for attempt in range(attempts):
                self.port = _free_port()
                try:
                    self._pg_ctl("start", "-w", "-t", "30", "-l", str(self.log_file), "-o", self._server_options())
                    break
                except RuntimeError:
                    if attempt + 1 == attempts or "could not bind" not in self._log_tail():
                        raise
        except BaseException:
            self._remove_folder()
            raise
        self.startup_seconds = time.perf_counter() - began
        logger.info("PostgreSQL %s started on port %d in %.2f s", self.bin_dir, self.port, self.startup_seconds)
        return self

    def stop(self) -> None:
        if self.folder is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                # Immediate: no shutdown checkpoint, the folder is deleted next anyway.
                self._pg_ctl("stop", "-w", "-t", "30", "-m", "immediate")
        finally:
            self._remove_folder()

    # -- databases -------------------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{quote(self.password, safe='')}@{self.host}:{self.port}/{database}"

    def unique_name(self, hint: str = "test") -> str:
        """A database name no other call returns: `hint` made safe and short, plus a counter."""
        self._counter += 1
        return f"{re.sub(r'[^a-z0-9]+', '_', hint.lower())[:40]}_{self._counter}"

    def create_database(self, name: str, *, template: str = "template0") -> str:
        """Create an empty database (a copy of `template`) and return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            # FORCE ends connections a test left open (a pool not closed after a failure).
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # -- internals -------------------------------------------------------------------------------------

    def _server_options(self) -> str:
        assert self.folder is not None
        options = {
            "listen_addresses": self.host,
            "port": str(self.port),
            # pg_ctl waits on this socket; the default /var/run/postgresql may not be writable by this user.
            "unix_socket_directories": str(self.folder),
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            "max_connections": "200",
        }
        return " ".join(f"-c {key}={value}" for key, value in options.items())

    def _initdb(self) -> None:
        assert self.folder is not None
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n")
        if self._run_as is not None:
            os.chown(password_file, *self._run_as)
        self._run(
            str(self.bin_dir / "initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.user,
            "--pwfile",
            str(password_file),
            "--auth-host",
            "scram-sha-256",
            "--auth-local",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            "--no-instructions",
        )
        password_file.unlink()

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "--pgdata", str(self.data_dir), *args)

    def _run(self, *command: str) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        if self._run_as is not None:
            uid, gid = self._run_as
            done = subprocess.run(
                command, capture_output=True, text=True, env=env, user=uid, group=gid, extra_groups=[], check=False
            )
        else:
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(command[0]).name} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except (OSError, AssertionError):
            return ""

    def _remove_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _unprivileged_ids() -> tuple[int, int]:
    for name in _UNPRIVILEGED:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError(
        "running as root, and PostgreSQL refuses root: none of the users "
        f"{', '.join(_UNPRIVILEGED)} exists to run it as (create one, e.g. `useradd --system postgres`)"
    )
