"""`musicgpt-mcp`: run the MCP server over stdio, against MusicGPT or the built-in sandbox."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from . import __version__, logs
from .config import ENV_VARS, Settings, folders


def _parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {var.name}\n      {var.help}\n      Default: {var.default}" for var in ENV_VARS)
    parser = argparse.ArgumentParser(
        prog="musicgpt-mcp",
        description=(
            "MCP server that splits songs into stems with the MusicGPT Extraction API. "
            "By default it speaks MCP over stdio: start it from an MCP host (Claude Desktop, Claude Code, "
            "Cursor, VS Code), not by hand. With --transport http it serves Streamable HTTP at /mcp for hosted "
            "use (see MUSICGPT_MCP_AUTH)."
        ),
        epilog=f"environment variables (read at start-up):\n{env_help}\n\nLogs go to stderr; stdout carries only MCP.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help=(
            "Run against a built-in MusicGPT double on a loopback port instead of the real API: no key "
            "needed, no credits spent, nothing leaves the machine. MUSICGPT_API_KEY and MUSICGPT_BASE_URL "
            "are ignored."
        ),
    )
    parser.add_argument(
        "--sandbox-eta",
        type=int,
        default=5,
        metavar="SECONDS",
        help="With --sandbox: the eta the sandbox promises for each job (default: 5).",
    )
    parser.add_argument(
        "--allowed-dirs",
        nargs="*",
        default=[],
        metavar="FOLDER",
        help=(
            "Folders audio files may be uploaded from, one argument each; when given, they replace "
            "MUSICGPT_MCP_ALLOWED_DIRS. For hosts that pass a list of folders as separate arguments "
            "(the MCP Bundle's settings form does)."
        ),
    )
    parser.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio (default: started by an MCP host) or http (Streamable HTTP at /mcp, for remote clients).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="With --transport http: the address to listen on.")
    parser.add_argument("--port", type=int, default=8000, help="With --transport http: the port (default: 8000).")
    parser.add_argument("--version", action="version", version=f"musicgpt-mcp {__version__}")
    return parser


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """The settings: the environment's, with the command line's folders (if any) in place of
    MUSICGPT_MCP_ALLOWED_DIRS. A ConfigError raised here surfaces in each tool call, not at start-up."""
    settings = Settings.from_env(env)
    # An MCP Bundle's list of folders cannot become one environment variable (the host substitutes
    # lists only as separate arguments), so it arrives here, one folder per argument.
    given = folders(args.allowed_dirs, "--allowed-dirs")
    return dataclasses.replace(settings, allowed_dirs=given) if given else settings


def _terminate(signum: int, frame: object) -> None:
    # A host stopping the server sends SIGTERM. Unwinding the event loop is not an option: it waits
    # for the thread blocked reading stdin. So remove the half-written downloads, then exit at once.
    from .downloads import remove_active_temporaries

    remove_active_temporaries()
    for folder in _REMOVE_AT_EXIT:
        shutil.rmtree(folder, ignore_errors=True)
    os._exit(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logs.configure()
    if args.transport == "stdio":
        # Over HTTP uvicorn handles the signals itself and lets running requests finish.
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _terminate)
    if not args.sandbox:
        _run(args, lambda: settings_from(args, os.environ))
        return

    from pydantic import SecretStr

    from .sandbox import Sandbox
    from .urls import parse_webhook_prefixes

    # The sandbox replaces the key and base URL, and keeps a ledger of its own that lives as long as it
    # does (its jobs vanish with it, and must never mix with paid ones); every other setting still comes
    # from the environment.
    env = {k: v for k, v in os.environ.items() if k not in ("MUSICGPT_API_KEY", "MUSICGPT_BASE_URL")}
    try:
        hooks = parse_webhook_prefixes(env.get("MUSICGPT_MCP_WEBHOOK_URLS"))
    except ValueError:
        hooks = ()  # the server reports the bad variable on each call
    # Over HTTP with header sign-in every caller brings a key of their own: the sandbox takes any.
    any_key = args.transport == "http" and env.get("MUSICGPT_MCP_AUTH", "").strip().lower() == "header"
    with (
        Sandbox(eta=max(0, args.sandbox_eta), webhook_urls=hooks, accept_any_key=any_key) as sandbox,
        _sandbox_state_dir() as state_dir,
    ):

        def settings() -> Settings:
            # Stems come from the sandbox's own loopback origin, so downloads may reach it.
            resolved = settings_from(args, env)
            return dataclasses.replace(
                resolved,
                api_key=SecretStr(sandbox.api_key),
                base_url=sandbox.base_url,
                state_dir=state_dir,
                storage_hosts=(*resolved.storage_hosts, sandbox.netloc),
            )

        _run(args, settings)


def _run(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    from .server import create_server

    if args.transport == "stdio":
        create_server(settings).run()
        return
    from .config import ConfigError
    from .web import serve

    try:
        # Over HTTP a bad setting stops the start: an operator is watching, and an unsafe server must not run.
        serve(settings(), args.host, args.port)
    except ConfigError as exc:
        sys.stderr.write(f"musicgpt-mcp: {exc}\n")
        sys.exit(2)


@contextlib.contextmanager
def _sandbox_state_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="musicgpt-mcp-sandbox-"))
    _REMOVE_AT_EXIT.append(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# Folders to remove even when a signal ends the process without unwinding.
_REMOVE_AT_EXIT: list[Path] = []
