"""`musicgpt-mcp install <host>`: add this server to an MCP host's configuration, started the way it is installed.

The entry runs this very installation: this environment's Python with `-m musicgpt_mcp` (a checkout's
.venv, `uv tool install`, pipx), or `uvx` when the environment lives in a cache that may be deleted
(an environment `uvx` made). Every other entry in the file is kept, a second run changes nothing (the
file stays byte-identical), the change is shown before it is written, the file is replaced atomically
with a backup of the old one beside it, and a file that is not valid JSON is left alone. The key is
never shown in full. Claude Code manages its own file: for it the `claude mcp add` command is printed
(or run). This command never speaks MCP, so it writes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final, TextIO
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from .config import is_placeholder
from .musicgpt.key import key_problem

HOSTS: Final = ("claude-desktop", "claude-code", "cursor", "vscode")
KEY_VAR: Final = "MUSICGPT_API_KEY"
VSCODE_INPUT: Final = "musicgpt-api-key"
VSCODE_INPUT_ENTRY: Final[dict[str, Any]] = {
    "type": "promptString",
    "id": VSCODE_INPUT,
    "description": "MusicGPT API key",
    "password": True,
}
# Keys of an entry this command writes; anything else an existing entry holds (a host's own flags) is kept.
_OURS: Final = ("type", "command", "args", "env", "url", "headers")


class InstallError(Exception):
    """Nothing was changed; the message says why and what to do."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "install",
        help="add this server to an MCP host's configuration",
        description=(
            "Add this server to an MCP host's configuration, with the command that starts this installation. "
            "Other entries are kept; running it again changes nothing; the change is shown first and the old file "
            "is kept as a backup. Claude Code: prints the `claude mcp add` command (or runs it with --run)."
        ),
    )
    parser.add_argument("host", choices=HOSTS)
    parser.add_argument("--sandbox", action="store_true", help="install the offline trial (no key, no credits)")
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the MusicGPT API key (default: {KEY_VAR} from the environment, else the key already installed); "
        "VS Code asks for it itself and keeps it in its secret storage",
    )
    parser.add_argument("--name", default="musicgpt", help="the server's name in the host (default: musicgpt)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="write this file instead of the host's usual one")
    parser.add_argument("--dry-run", action="store_true", help="show the change, write nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask before writing (asked only at a terminal)")
    parser.add_argument("--run", action="store_true", help="claude-code: run the commands instead of printing them")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The `install` subcommand; its exit status."""
    out = sys.stdout if out is None else out
    try:
        if args.host == "claude-code":
            return _claude_code(args, out)
        return _install_file(args, out)
    except InstallError as exc:
        sys.stderr.write(f"musicgpt-mcp install: {exc}\n")
        return 2


# --- the command that starts this installation -------------------------------------------------------


def server_command(prefix: Path | None = None, executable: str | None = None) -> list[str]:
    """How a host starts this installation: this environment's Python, unless the environment lives in
    a cache (an ephemeral `uvx` environment, which uv may delete at any time): then `uvx` again."""
    prefix = Path(sys.prefix) if prefix is None else prefix
    if not _in_cache(prefix):
        return [executable or sys.executable, "-m", "musicgpt_mcp"]
    source = _installed_from()
    return [_uvx(), "--from", source, "musicgpt-mcp"] if source else [_uvx(), "musicgpt-mcp"]


def _in_cache(prefix: Path) -> bool:
    # A folder holding CACHEDIR.TAG is a cache (https://bford.info/cachedir/): uv tags its cache root,
    # under which uvx builds its environments. A project's .venv tags itself, so only parents count.
    return any((parent / "CACHEDIR.TAG").is_file() for parent in prefix.parents)


def _installed_from() -> str | None:
    """The local folder, VCS or archive URL this package was installed from (PEP 610); None from an index."""
    try:
        text = metadata.distribution("musicgpt-mcp").read_text("direct_url.json")
        info = json.loads(text) if text else None
    except (metadata.PackageNotFoundError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        return None
    url: str = info["url"]
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict) and isinstance(vcs.get("vcs"), str):
        commit = vcs.get("commit_id")
        return f"{vcs['vcs']}+{url}" + (f"@{commit}" if isinstance(commit, str) else "")
    parts = urlsplit(url)
    return url2pathname(unquote(parts.path)) if parts.scheme == "file" else url


def _uvx() -> str:
    # Hosts start servers with a short PATH (Claude Desktop on macOS): name uvx by its full path.
    uv = os.environ.get("UV")
    if uv:
        beside = Path(uv).with_name("uvx" + Path(uv).suffix)
        if beside.is_file():
            return str(beside)
    return shutil.which("uvx") or "uvx"


# --- where each host keeps its servers ------------------------------------------------------------------


def config_path(host: str, home: Path, platform: str, environ: Mapping[str, str]) -> Path:
    """The user-level file of `host` on `platform` (sys.platform)."""
    if host == "cursor":
        return home / ".cursor" / "mcp.json"
    folder, name = ("Claude", "claude_desktop_config.json") if host == "claude-desktop" else ("Code/User", "mcp.json")
    if platform == "darwin":
        base = home / "Library" / "Application Support"
    elif platform == "win32":
        base = Path(environ.get("APPDATA") or home / "AppData" / "Roaming")
    else:
        base = home / ".config"
    return base / folder / name


@dataclass(frozen=True)
class Plan:
    path: Path
    old_text: str | None
    old: dict[str, Any]
    new: dict[str, Any]
    key: str | None


def _install_file(args: argparse.Namespace, out: TextIO) -> int:
    path = args.config or config_path(args.host, Path.home(), sys.platform, os.environ)
    plan = _plan(args, path.expanduser())
    servers_key = "servers" if args.host == "vscode" else "mcpServers"
    if plan.new == plan.old:
        out.write(f"{plan.path}: {args.name!r} is already installed with this command; nothing changed.\n")
        return 0
    if args.host == "vscode" and args.api_key:
        out.write(
            "VS Code asks for the key the first time it starts the server and keeps it in its secret storage; "
            "--api-key is not written to the file.\n"
        )
    out.write(f"{plan.path}:\n")
    out.write(_shown_change(plan, servers_key, args.name))
    out.write(_kept(plan.old, servers_key, args.name))
    if args.dry_run:
        out.write("Dry run: nothing was written.\n")
        return 0
    if not args.yes and sys.stdin.isatty() and input("Write this? [Y/n] ").strip().lower() not in ("", "y", "yes"):
        out.write("Nothing was written.\n")
        return 1
    backup = write_atomically(plan.path, json.dumps(plan.new, indent=2, ensure_ascii=False) + "\n")
    kept = f" (the previous file is kept as {backup.name})" if backup else ""
    out.write(f"Wrote {plan.path}{kept}. Restart {_label(args.host)} to load it.\n")
    if args.sandbox:
        out.write("This is the offline trial: jobs and credits are made up. Install again with a key for MusicGPT.\n")
    return 0


def _plan(args: argparse.Namespace, path: Path) -> Plan:
    old_text, old = read_config(path, args.host)
    servers_key = "servers" if args.host == "vscode" else "mcpServers"
    servers = old.get(servers_key, {})
    if not isinstance(servers, dict):
        raise InstallError(
            f"{path}: {servers_key!r} is not a JSON object; nothing was changed. Fix it and run this again."
        )
    previous = servers.get(args.name)
    previous = previous if isinstance(previous, dict) else {}
    key = None if args.host == "vscode" or args.sandbox else _key(args, previous, path)
    entry = _entry(args.host, server_command(), args.sandbox, key, previous)
    new = dict(old)
    new[servers_key] = {**servers, args.name: entry}
    if args.host == "vscode" and not args.sandbox:
        new["inputs"] = _with_input(old.get("inputs"), path)
    return Plan(path, old_text, old, new, key)


def read_config(path: Path, host: str) -> tuple[str | None, dict[str, Any]]:
    """The file's text and its JSON object ({} for a missing or empty file); InstallError for anything else."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"cannot read {path} ({exc}); nothing was changed.") from None
    if not text.strip():
        return text, {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        comments = (
            " (VS Code allows comments there; this command does not: remove them first)" if host == "vscode" else ""
        )
        raise InstallError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}){comments}. Nothing was "
            "changed: fix the file, or move it away to start a new one, and run this again."
        ) from None
    if not isinstance(document, dict):
        raise InstallError(f"{path} does not hold a JSON object; nothing was changed. Fix it and run this again.")
    return text, document


def _key(args: argparse.Namespace, previous: Mapping[str, Any], path: Path) -> str:
    env = previous.get("env")
    installed = env.get(KEY_VAR) if isinstance(env, dict) else None
    for candidate in (args.api_key, os.environ.get(KEY_VAR), installed):
        if isinstance(candidate, str) and candidate.strip() and not is_placeholder(candidate):
            key = candidate.strip()
            problem = key_problem(key)
            if problem:
                raise InstallError(problem.replace("and restart the server", "and run this again"))
            return key
    raise InstallError(
        f"no MusicGPT API key: give --api-key, or set {KEY_VAR} in the environment (keys are on the MusicGPT API "
        f"dashboard), or install the offline trial with --sandbox. Nothing was changed in {path}."
    )


def _entry(
    host: str, command: list[str], sandbox: bool, key: str | None, previous: Mapping[str, Any]
) -> dict[str, Any]:
    env = previous.get("env")
    env = {k: v for k, v in env.items() if k != KEY_VAR} if isinstance(env, dict) else {}
    if host == "vscode" and not sandbox:
        env[KEY_VAR] = f"${{input:{VSCODE_INPUT}}}"
    elif key is not None:
        env[KEY_VAR] = key
    entry: dict[str, Any] = {k: v for k, v in previous.items() if k not in _OURS}
    if host == "vscode":
        entry["type"] = "stdio"
    entry["command"] = command[0]
    entry["args"] = [*command[1:], *(["--sandbox"] if sandbox else [])]
    if env:
        entry["env"] = env
    return entry


def _with_input(inputs: object, path: Path) -> list[Any]:
    if inputs is None:
        return [VSCODE_INPUT_ENTRY]
    if not isinstance(inputs, list):
        raise InstallError(f"{path}: 'inputs' is not a JSON list; nothing was changed. Fix it and run this again.")
    if VSCODE_INPUT_ENTRY in inputs:
        return inputs
    others = [i for i in inputs if not (isinstance(i, dict) and i.get("id") == VSCODE_INPUT)]
    return [*others, VSCODE_INPUT_ENTRY]


def _shown_change(plan: Plan, servers_key: str, name: str) -> str:
    """Our entry (and VS Code's input) before and after, as a diff; other entries are not shown (they may
    hold other servers' secrets), and the key is masked."""

    def ours(document: Mapping[str, Any]) -> list[str]:
        servers = document.get(servers_key)
        mine = {name: servers[name]} if isinstance(servers, dict) and name in servers else {}
        part: dict[str, Any] = {servers_key: mine}
        if "inputs" in document:
            part["inputs"] = document["inputs"]
        return mask(json.dumps(part, indent=2, ensure_ascii=False), plan.key).splitlines(keepends=True)

    before = ours(plan.old) if plan.old_text is not None else []
    diff = difflib.unified_diff(before, ours(plan.new), "before", "after", n=20)
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


def _kept(old: Mapping[str, Any], servers_key: str, name: str) -> str:
    """One line naming what the diff leaves out, so a diff that starts from an empty server list does not
    read as if the others were removed."""
    servers = old.get(servers_key)
    others = sorted(k for k in servers if k != name) if isinstance(servers, dict) else []
    settings = [k for k in old if k not in (servers_key, "inputs")]
    if not others and not settings:
        return ""
    parts = []
    if others:
        parts.append(f"{len(others)} other server{'s' if len(others) != 1 else ''} ({', '.join(others)})")
    if settings:
        parts.append(f"{len(settings)} other setting{'s' if len(settings) != 1 else ''}")
    return f"Kept as they are, not shown: {' and '.join(parts)}.\n"


def mask(text: str, key: str | None) -> str:
    """`text` with the key shown only by its last four characters (none of a short one)."""
    if not key:
        return text
    return text.replace(key, "****" + (key[-4:] if len(key) >= 16 else ""))


def write_atomically(path: Path, text: str) -> Path | None:
    """Replace the file with `text` through a temporary file and a rename, so a reader (or a crash) never
    meets half a file. A link is followed (dotfile managers link these files). The old file, if any, is
    first copied beside it; its mode is kept (the file holds a key, so a new one is private)."""
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    backup: Path | None = None
    mode = 0o600
    if target.exists():
        mode = target.stat().st_mode & 0o777
        backup = target.with_name(f"{target.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        shutil.copy2(target, backup)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(mode)
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return backup


def _label(host: str) -> str:
    return {"claude-desktop": "Claude Desktop", "cursor": "Cursor", "vscode": "VS Code"}.get(host, host)


# --- Claude Code ----------------------------------------------------------------------------------------


def claude_code_commands(name: str, command: list[str], with_key: bool) -> tuple[list[str], list[str]]:
    """`claude mcp remove` (so that a second run replaces the entry) and `claude mcp add`, user scope."""
    remove = ["claude", "mcp", "remove", name, "--scope", "user"]
    add = ["claude", "mcp", "add", name, "--scope", "user"]
    if with_key:
        add += ["--env", f"{KEY_VAR}=${KEY_VAR}"]
    return remove, [*add, "--", *command]


def _claude_code(args: argparse.Namespace, out: TextIO) -> int:
    command = server_command() + (["--sandbox"] if args.sandbox else [])
    key = None if args.sandbox else _key(args, {}, Path("Claude Code's configuration"))
    remove, add = claude_code_commands(args.name, command, key is not None)
    if not args.run or args.dry_run:
        # The key stays a reference to the shell's variable: the printed line never holds it.
        shown = shlex.join(add).replace(shlex.quote(f"{KEY_VAR}=${KEY_VAR}"), f'{KEY_VAR}="${KEY_VAR}"')
        out.write(f"{shlex.join(remove)} 2>/dev/null\n{shown}\n")
        if key is not None and os.environ.get(KEY_VAR, "").strip() != key:
            out.write(f"# These read the key from {KEY_VAR} in your shell: set it first, or run this with --run.\n")
        return 0
    claude = shutil.which("claude")
    if claude is None:
        raise InstallError(
            "`claude` (Claude Code's command) is not on PATH; install Claude Code, or run without --run."
        )
    real_add = [claude, *add[1:]]
    if key is not None:
        real_add[real_add.index(f"{KEY_VAR}=${KEY_VAR}")] = f"{KEY_VAR}={key}"
    out.write(f"Running: {mask(shlex.join([claude, *add[1:]]), key)}\n")
    # Our own argument lists, run without a shell. The remove fails the first time (nothing to remove): fine.
    subprocess.run([claude, *remove[1:]], capture_output=True, check=False)  # noqa: S603
    return subprocess.run(real_add, check=False).returncode  # noqa: S603
