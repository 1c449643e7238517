"""`musicgpt-mcp`: run the MCP server over stdio, against MusicGPT or the built-in sandbox."""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Sequence

from . import __version__, logs
from .config import ENV_VARS


def _parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {var.name}\n      {var.help}\n      Default: {var.default}" for var in ENV_VARS)
    parser = argparse.ArgumentParser(
        prog="musicgpt-mcp",
        description=(
            "MCP server that splits songs into stems with the MusicGPT Extraction API. "
            "It speaks MCP over stdio: start it from an MCP host (Claude Desktop, Claude Code, Cursor, "
            "VS Code), not by hand."
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
    parser.add_argument("--version", action="version", version=f"musicgpt-mcp {__version__}")
    return parser


def _terminate(signum: int, frame: object) -> None:
    # A host stopping the server sends SIGTERM. Unwinding the event loop is not an option: it waits
    # for the thread blocked reading stdin. So remove the half-written downloads, then exit at once.
    from .downloads import remove_active_temporaries

    remove_active_temporaries()
    os._exit(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logs.configure()
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    from .server import create_server

    if not args.sandbox:
        create_server().run()
        return

    import dataclasses

    from pydantic import SecretStr

    from .config import Settings
    from .sandbox import Sandbox
    from .urls import parse_webhook_prefixes

    # The sandbox replaces the key and base URL; every other setting still comes from the environment.
    env = {k: v for k, v in os.environ.items() if k not in ("MUSICGPT_API_KEY", "MUSICGPT_BASE_URL")}
    try:
        hooks = parse_webhook_prefixes(env.get("MUSICGPT_MCP_WEBHOOK_URLS"))
    except ValueError:
        hooks = ()  # the server reports the bad variable on each call
    with Sandbox(eta=max(0, args.sandbox_eta), webhook_urls=hooks) as sandbox:

        def settings() -> Settings:
            # Stems come from the sandbox's own loopback origin, so downloads may reach it.
            resolved = Settings.from_env(env)
            return dataclasses.replace(
                resolved,
                api_key=SecretStr(sandbox.api_key),
                base_url=sandbox.base_url,
                storage_hosts=(*resolved.storage_hosts, sandbox.netloc),
            )

        create_server(settings).run()
