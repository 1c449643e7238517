"""The command line as a person at a terminal meets it: Ctrl-C and Ctrl-D, a taken port, the standalone
sandbox shared by two servers, and folders the configuration refuses. Real subprocesses throughout."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
from mcp import Client, StdioServerParameters

from .conftest import PYTHON, TMP, closed_port, subprocess_env
from .test_remote import connect_http

pytestmark = pytest.mark.anyio

INITIALIZE = (
    json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
    )
    + "\n"
).encode()


class Lines:
    """A stream's lines, read on a thread as they come, so a test can wait for one without blocking forever."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            with self._new:
                self.lines.append(raw.decode(errors="replace"))
                self._new.notify_all()

    def wait_for(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                found = next((line for line in self.lines if needle in line), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line with {needle!r} in {self.text()!r}")
                self._new.wait(left)

    def text(self) -> str:
        return "".join(self.lines)


def _sigint_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def started(*args: str, background: bool = False, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], Lines]]:
    """The command, started as from a terminal; with `background`, as a shell's background job (`cmd &`), which
    starts with SIGINT ignored."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "musicgpt_mcp", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(PYTHONFAULTHANDLER="1", **env),
        preexec_fn=_sigint_ignored if background else None,
    )
    assert proc.stderr is not None
    try:
        yield proc, Lines(proc.stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def ready_stdio_server(proc: subprocess.Popen[bytes]) -> None:
    """Block until the server has answered initialize: its signal handlers are in place by then."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(INITIALIZE)
    proc.stdin.flush()
    reply = json.loads(proc.stdout.readline())
    assert reply["id"] == 1 and "result" in reply


def stopped_within(proc: subprocess.Popen[bytes], seconds: float, stderr: Lines | None = None) -> float:
    started_at = time.monotonic()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        # Where it hangs: faulthandler (PYTHONFAULTHANDLER, set by `started`) prints every thread's stack.
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=10)
        said = f": {stderr.text()[-4000:]}" if stderr is not None else ""
        raise AssertionError(f"still running {seconds} s later{said}") from None
    return time.monotonic() - started_at


@pytest.mark.parametrize("mode", [[], ["--sandbox"]])
def test_ctrl_c_stops_a_stdio_server_at_once_without_a_traceback(mode: list[str]) -> None:
    # Until now SIGINT cancelled the event loop, which then waited on the thread reading stdin: the
    # server ran on until Ctrl-D and then printed a 63-line KeyboardInterrupt traceback.
    with started(*mode) as (proc, stderr):
        ready_stdio_server(proc)
        proc.send_signal(signal.SIGINT)
        stopped_within(proc, 3)
    assert proc.returncode == 128 + signal.SIGINT
    assert "Traceback" not in stderr.text()


def test_end_of_input_ends_a_stdio_server_quietly() -> None:
    with started("--sandbox") as (proc, stderr):
        ready_stdio_server(proc)
        assert proc.stdin is not None
        proc.stdin.close()
        stopped_within(proc, 3)
    assert proc.returncode == 0
    assert "Traceback" not in stderr.text()


def test_http_says_it_is_serving_only_once_it_is_and_stops_on_ctrl_c() -> None:
    port = closed_port()
    with started("--transport", "http", "--sandbox", "--port", str(port)) as (proc, stderr):
        serving = stderr.wait_for("serving MCP at")
        # Said after the app started (it used to come first, and then the port could still fail).
        assert stderr.lines.index(stderr.wait_for("Application startup complete")) < stderr.lines.index(serving)
        # The line is the signal that it serves: a request made the moment it appears is answered.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            assert json.loads(reply.read())["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        stopped_within(proc, 10)
    assert "Traceback" not in stderr.text()


def test_a_taken_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [PYTHON, "-m", "musicgpt_mcp", "--transport", "http", "--port", str(port)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
            check=False,
        )
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [
        f"musicgpt-mcp: Cannot listen on 127.0.0.1:{port}: Address already in use. If another server (perhaps "
        "another musicgpt-mcp) is using that port, stop it or choose another with --port."
    ]


def sandbox_settings(stderr: Lines) -> dict[str, str]:
    """The variables the standalone sandbox says to give each server."""
    stderr.wait_for("Ctrl-C stops it.")
    pairs = (line.strip().split("=", 1) for line in stderr.lines if line.startswith("  MUSICGPT_"))
    return {name: value.split()[0] for name, value in pairs}


async def test_two_servers_share_one_standalone_sandbox(song: Path, tmp_path: Path) -> None:
    port = closed_port()
    with started("sandbox", "--port", str(port), "--eta", "1") as (sandbox, stderr):
        settings = sandbox_settings(stderr)
        assert settings["MUSICGPT_BASE_URL"] == f"http://127.0.0.1:{port}/api/public"
        assert settings["MUSICGPT_MCP_STORAGE_HOSTS"] == f"127.0.0.1:{port}"

        def server(ledger: str) -> StdioServerParameters:
            # Each with a ledger of its own: the sandbox is the only thing they share.
            env = subprocess_env(
                **settings,
                MUSICGPT_MCP_STATE_DIR=ledger,
                MUSICGPT_MCP_ALLOWED_DIRS=str(TMP),
                MUSICGPT_MCP_OUTPUT_DIR=str(tmp_path / "out"),
            )
            return StdioServerParameters(command=PYTHON, args=["-m", "musicgpt_mcp"], env=env)

        async with (
            Client(server(tempfile.mkdtemp(dir=tmp_path))) as first,
            Client(server(tempfile.mkdtemp(dir=tmp_path))) as second,
        ):
            submitted = await first.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]})
            assert not submitted.is_error, submitted.content
            task_id = structured(submitted)["task_id"]
            status = await second.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 20})
            assert structured(status)["status"] == "COMPLETED", status.content
            saved = await second.call_tool("download_stems", {"task_id": task_id})
            [file] = structured(saved)["files"]
            assert Path(file["path"]).is_file() and file["stem"] == "vocals"
        sandbox.send_signal(signal.SIGINT)
        stopped_within(sandbox, 5, stderr)
    assert sandbox.returncode == 0
    assert "Traceback" not in stderr.text()


async def test_replicas_on_one_standalone_sandbox_get_its_webhooks(tmp_path: Path) -> None:
    """Given the servers' public URL, the standalone double delivers to their own webhook as MusicGPT would; a
    job with a server webhook is not polled before its safety net (a minute past its ETA), so a job seen done
    within the wait below was finished by the delivery."""
    port, server_port = closed_port(), closed_port()
    public = f"http://127.0.0.1:{server_port}/mcp"
    with started("sandbox", "--port", str(port), "--eta", "1", MUSICGPT_MCP_PUBLIC_URL=public) as (sandbox, stderr):
        settings = sandbox_settings(stderr)
        assert (
            f"Webhooks are delivered (to loopback only) under: http://127.0.0.1:{server_port}/webhooks/musicgpt/"
            in (stderr.text())
        )
        env = {**settings, "MUSICGPT_MCP_PUBLIC_URL": public, "MUSICGPT_MCP_STATE_DIR": str(tmp_path)}
        with started("--transport", "http", "--port", str(server_port), **env) as (_, server_log):
            server_log.wait_for("serving MCP at")
            async with connect_http(public) as client:
                submitted = await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"})
                task_id = structured(submitted)["task_id"]
                status = await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 20})
        sandbox.send_signal(signal.SIGINT)
        stopped_within(sandbox, 5, stderr)
    assert structured(status)["status"] == "COMPLETED" and structured(status)["waited_seconds"] < 15, status.content


def test_a_sandbox_on_a_taken_port_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [PYTHON, "-m", "musicgpt_mcp", "sandbox", "--port", str(port)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
            check=False,
        )
    assert proc.returncode == 2
    assert f"cannot start on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


def structured(result: Any) -> dict[str, Any]:
    assert result.structured_content is not None, result.content
    return dict(result.structured_content)


@pytest.mark.parametrize("command", [["sandbox", "--port", "0"], ["--sandbox"]], ids=["standalone sandbox", "stdio"])
def test_ctrl_c_stops_it_when_started_as_a_background_job(command: list[str]) -> None:
    """A background job (`musicgpt-mcp sandbox &`, and CI runners that start tests so) begins with SIGINT ignored,
    and Python then raises no KeyboardInterrupt: the standalone sandbox ignored Ctrl-C there (CI caught it)."""
    with started(*command, background=True) as (proc, stderr):
        if command[0] == "sandbox":
            stderr.wait_for("Ctrl-C stops it")
        else:
            ready_stdio_server(proc)
        proc.send_signal(signal.SIGINT)
        stopped_within(proc, 5, stderr)
    assert "Traceback" not in stderr.text()
