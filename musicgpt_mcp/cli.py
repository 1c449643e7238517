"""`musicgpt-mcp`: run the MCP server (stdio, or HTTP), against MusicGPT or the built-in sandbox; and the
commands beside it: `install <host>` (install.py) and `sandbox` (the double on its own, for replicas to share)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__, install, logs
from .config import ConfigError, Settings, folders
from .envvars import ENV_VARS


def _parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {var.name}\n      {var.help}\n      Default: {var.default}" for var in ENV_VARS)
    parser = argparse.ArgumentParser(
        prog="musicgpt-mcp",
        description=(
            "MCP server that splits songs into stems with the MusicGPT Extraction API. "
            "By default it speaks MCP over stdio: start it from an MCP host (Claude Desktop, Claude Code, "
            "Cursor, VS Code), not by hand: `musicgpt-mcp install <host>` adds it to one. With --transport http it "
            "serves Streamable HTTP at /mcp for hosted use (see MUSICGPT_MCP_AUTH)."
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands (none: run the server)")
    install.add_parser(commands)
    _add_sandbox_parser(commands)
    return parser


def _add_sandbox_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "sandbox",
        help="run the MusicGPT double on its own, for several server processes to share",
        description=(
            "Run the offline MusicGPT double (made-up jobs and credits) until Ctrl-C, and print the settings that "
            "point a server at it. Unlike --sandbox, which gives each server process a double of its own, one "
            "standalone sandbox serves every replica, so they share its jobs."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="the port to listen on (default: any free one)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    parser.add_argument("--eta", type=int, default=5, metavar="SECONDS", help="the eta promised per job (default: 5)")
    parser.add_argument(
        "--any-key",
        action="store_true",
        help="accept every caller's own key (servers with MUSICGPT_MCP_AUTH=header), not only the sandbox's",
    )


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """The settings: the environment's, with the command line's folders (if any) in place of
    MUSICGPT_MCP_ALLOWED_DIRS. A problem with either is one of the settings' problems (Settings.problems):
    it stops the tools that read files, and each call says so."""
    settings = Settings.from_env(env)
    # An MCP Bundle's list of folders cannot become one environment variable (the host substitutes
    # lists only as separate arguments), so it arrives here, one folder per argument.
    try:
        given = folders(args.allowed_dirs, "--allowed-dirs")
    except ConfigError as exc:
        problem = ConfigError(str(exc), variable="MUSICGPT_MCP_ALLOWED_DIRS")
        return dataclasses.replace(settings, problems=(*settings.problems, problem))
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
    try:
        if args.command == "install":
            sys.exit(install.run(args))
        if args.command == "sandbox":
            sys.exit(_standalone_sandbox(args))
        _serve(args)
    except KeyboardInterrupt:
        # Ctrl-C outside the handlers below (during start-up, at the install prompt): stop without a traceback.
        sys.exit(130)


def _serve(args: argparse.Namespace) -> None:
    if args.transport == "stdio":
        # Over HTTP uvicorn handles the signals itself and lets running requests finish. SIGINT is
        # Ctrl-C from someone running the server by hand: left to asyncio, it cancels the loop, which
        # then waits for the thread blocked reading stdin, so nothing stops until Ctrl-D.
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _terminate)
    if not args.sandbox:
        _run(args, lambda: settings_from(args, os.environ))
        return

    from pydantic import SecretStr

    from .hooks import hook_prefix
    from .sandbox import Sandbox
    from .summaries import mark_sandbox
    from .urls import parse_webhook_prefixes

    # Every text this process writes is about the sandbox's made-up jobs (it never reaches MusicGPT).
    mark_sandbox()
    # The sandbox replaces the key and base URL, and keeps a ledger of its own that lives as long as it
    # does (its jobs vanish with it, and must never mix with paid ones); every other setting still comes
    # from the environment.
    env = {k: v for k, v in os.environ.items() if k not in ("MUSICGPT_API_KEY", "MUSICGPT_BASE_URL")}
    try:
        hooks = parse_webhook_prefixes(env.get("MUSICGPT_MCP_WEBHOOK_URLS"))
    except ValueError:
        hooks = ()  # the server reports the bad variable on each call
    public = env.get("MUSICGPT_MCP_PUBLIC_URL", "").strip()
    if args.transport == "http" and public:
        # The server gives MusicGPT a webhook of its own there (hooks.py): the double delivers to it as MusicGPT
        # would (when it is this machine: the double calls nothing else).
        hooks = (*hooks, hook_prefix(public))
    # Over HTTP with header sign-in every caller brings a key of their own: the sandbox takes any.
    any_key = args.transport == "http" and env.get("MUSICGPT_MCP_AUTH", "").strip().lower() == "header"
    with (
        Sandbox(eta=max(0, args.sandbox_eta), webhook_urls=hooks, accept_any_key=any_key, finish_early=True) as sandbox,
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


def _standalone_sandbox(args: argparse.Namespace) -> int:
    """`musicgpt-mcp sandbox`: the double on its own until Ctrl-C (or SIGTERM), for replicas to share."""
    from .hooks import hook_prefix
    from .sandbox import Sandbox
    from .urls import parse_webhook_prefixes

    try:
        hooks = parse_webhook_prefixes(os.environ.get("MUSICGPT_MCP_WEBHOOK_URLS"))
        public = os.environ.get("MUSICGPT_MCP_PUBLIC_URL", "").strip()
        if public:  # the servers' own webhook (hooks.py), delivered as MusicGPT would (to loopback only)
            hooks = (*hooks, hook_prefix(public))
        sandbox = Sandbox(
            eta=max(0, args.eta),
            host=args.host,
            port=args.port,
            webhook_urls=hooks,
            accept_any_key=args.any_key,
            finish_early=True,
        )
        sandbox.start()
    except (OSError, RuntimeError, ValueError) as exc:
        sys.stderr.write(f"musicgpt-mcp sandbox: cannot start on {args.host}:{args.port}: {exc}\n")
        return 2
    stop = threading.Event()
    # SIGINT too, set here rather than left to Python's KeyboardInterrupt: Python leaves SIGINT ignored when the
    # process started with it ignored (a shell's background job, some test runners), and then Ctrl-C did nothing.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda signum, frame: stop.set())
    sys.stderr.write(
        f"MusicGPT sandbox (offline: made-up jobs and credits) at {sandbox.base_url}\n"
        "Point each server process at it with:\n"
        f"  MUSICGPT_BASE_URL={sandbox.base_url}\n"
        f"  MUSICGPT_API_KEY={sandbox.api_key}{'  (or, with --any-key, any key)' if args.any_key else ''}\n"
        f"  MUSICGPT_MCP_STORAGE_HOSTS={sandbox.netloc}\n"
        + (
            f"Webhooks are delivered (to loopback only) under: {' '.join(hooks)}\n"
            if hooks
            else "No webhook is delivered: run it with the servers' MUSICGPT_MCP_PUBLIC_URL to reach theirs.\n"
        )
        + "Ctrl-C stops it.\n"
    )
    try:
        while not stop.wait(0.5):
            if not sandbox.running:
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


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
