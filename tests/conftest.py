from __future__ import annotations

import importlib.util
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.extension import advertise
from pydantic import SecretStr

from musicgpt_mcp.config import Settings
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.sandbox.audio import wav_tone
from musicgpt_mcp.server import create_server
from tests.support.issuer import TokenIssuer
from tests.support.postgres import PostgresServer, find_bin_dir

REPO = Path(__file__).resolve().parent.parent

# No test may touch the user's own job ledger: the default state folder (platformdirs honours
# XDG_STATE_HOME) points into a temporary folder for this test run and every server it starts.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="musicgpt-mcp-tests-state-")
# Recognisable, so a test can search every output for it.
SECRET_KEY = "mgpt-test-SECRET-4f1c9e7a2b"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _sandbox_session() -> Iterator[Sandbox]:
    with Sandbox(api_key=SECRET_KEY, eta=3) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(_sandbox_session: Sandbox) -> Sandbox:
    _sandbox_session.state.reset()
    _sandbox_session.state.eta = 3
    return _sandbox_session


TMP = Path(tempfile.gettempdir()).resolve()


def make_settings(sandbox: Sandbox, **overrides: Any) -> Settings:
    # Tests' files live under the temp folder, so that is what they may upload (and save into).
    values: dict[str, Any] = {
        "api_key": SecretStr(sandbox.api_key),
        "base_url": sandbox.base_url,
        "allowed_dirs": (TMP,),
        "output_dir": TMP / "musicgpt-mcp-tests-output",
        # A ledger of its own per server, unless a test shares one on purpose.
        "state_dir": Path(tempfile.mkdtemp(prefix="musicgpt-mcp-test-ledger-")),
        # The sandbox serves stems from its own loopback origin, which downloads may reach only when listed.
        "storage_hosts": (sandbox.netloc,),
    }
    values.update(overrides)
    return Settings(**values)


def renders_apps() -> dict[str, Any]:
    """Client options of a host that renders MCP Apps (Claude, VS Code, ChatGPT): only such a client is
    offered the tools meant for views alone (read_stem_audio)."""
    return {"extensions": [advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})]}


@asynccontextmanager
async def connect(settings: Settings, **client_options: Any) -> AsyncIterator[Client]:
    async with Client(create_server(settings), raise_exceptions=True, **client_options) as client:
        yield client


def wav_bytes(seconds: float = 0.25) -> bytes:
    """A real, playable WAV: the sandbox's own generator."""
    return wav_tone(seconds, 440.0)


@pytest.fixture
def song(tmp_path: Path) -> Path:
    path = tmp_path / "My Song (demo).wav"
    path.write_bytes(wav_bytes())
    return path


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    """The stdio client passes only a small environment to the child; give it what Python needs."""
    env = {
        k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR", "XDG_STATE_HOME")
    }
    env["PYTHONUNBUFFERED"] = "1"
    # A ledger of its own for each server process: tests reuse one song against one sandbox, and a job
    # remembered from another test would be "reused" although the sandbox has forgotten it.
    env["MUSICGPT_MCP_STATE_DIR"] = tempfile.mkdtemp(prefix="musicgpt-mcp-test-ledger-")
    env.update(extra)
    return env


PYTHON = sys.executable


# Some tests need a program beside Python: Node tools from `npm ci`, PostgreSQL, Chromium. On a
# contributor's machine without one, those tests skip and say how to get it; CI sets
# MUSICGPT_MCP_TEST_ALL=1, and there a missing program fails the test instead of skipping it.
REQUIRE_ALL = os.environ.get("MUSICGPT_MCP_TEST_ALL") == "1"


def require(available: bool, what: str, how: str) -> None:
    """Skip (or, under MUSICGPT_MCP_TEST_ALL=1, fail) unless `available`."""
    if available:
        return
    message = f"{what} is not available: {how}"
    if REQUIRE_ALL:
        pytest.fail(message + " (MUSICGPT_MCP_TEST_ALL=1 requires every test to run)")
    pytest.skip(message)


NODE_BIN = REPO / "node_modules" / ".bin"


def require_node_tools() -> Path:
    """The folder of the pinned Node tools (`npm ci` at the repository root installs them)."""
    require((NODE_BIN / "node").exists(), "the pinned Node tools", "run `npm ci` in the repository root")
    return NODE_BIN


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (tests/support/postgres.py; about 1 s to start)."""
    require(
        find_bin_dir() is not None,
        "PostgreSQL (initdb, pg_ctl)",
        "install the server (Debian/Ubuntu: `apt-get install postgresql`) or put its bin folder on PATH",
    )
    require(
        importlib.util.find_spec("psycopg") is not None,
        "the PostgreSQL driver (psycopg)",
        "run `uv sync` (the dev group installs musicgpt-mcp[postgres])",
    )
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, empty database for this test (a `CREATE DATABASE`, ~0.1 s), dropped afterwards."""
    name = postgres_server.unique_name(request.node.name)
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def token_issuer() -> Iterator[TokenIssuer]:
    """A real OAuth authorization server on loopback with its own keys (tests/support/issuer.py)."""
    with TokenIssuer() as issuer:
        yield issuer
