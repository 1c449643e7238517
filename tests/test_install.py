"""`musicgpt-mcp install <host>`, run as a user runs it (a subprocess with a throwaway HOME), and the entry it
writes started as the host would start it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from musicgpt_mcp.install import config_path, server_command

from .conftest import PYTHON, REPO, SECRET_KEY, subprocess_env

pytestmark = pytest.mark.anyio

OTHER = {"command": "other-server", "args": ["--flag"], "env": {"OTHER_TOKEN": "other-secret-value"}}


def install(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "musicgpt_mcp", "install", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(HOME=str(home), **env),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def desktop_config(home: Path) -> Path:
    return config_path("claude-desktop", home, sys.platform, {"APPDATA": str(home / "AppData" / "Roaming")})


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".*.bak"))


async def test_claude_desktop_sandbox_keeps_the_others_is_idempotent_and_starts(tmp_path: Path) -> None:
    path = desktop_config(tmp_path)
    if sys.platform.startswith("linux"):
        assert path == tmp_path / ".config" / "Claude" / "claude_desktop_config.json"
    path.parent.mkdir(parents=True)
    original = json.dumps({"mcpServers": {"other": OTHER}, "globalShortcut": "Ctrl+Space"})
    path.write_text(original)

    first = install(tmp_path, "claude-desktop", "--sandbox")
    assert first.returncode == 0, first.stderr
    written = path.read_bytes()
    document = json.loads(written)
    assert document["mcpServers"]["other"] == OTHER
    assert document["globalShortcut"] == "Ctrl+Space"
    entry = document["mcpServers"]["musicgpt"]
    assert entry == {"command": PYTHON, "args": ["-m", "musicgpt_mcp", "--sandbox"]}
    # The change was shown, and only our entry: never the other server's secret.
    assert '"musicgpt": {' in first.stdout and "--sandbox" in first.stdout
    assert "other-secret-value" not in first.stdout
    # ...and what was left out is named, so a diff from an empty list does not read as a removal.
    assert "Kept as they are, not shown: 1 other server (other) and 1 other setting." in first.stdout
    [backup] = backups(path)
    assert backup.read_text() == original

    second = install(tmp_path, "claude-desktop", "--sandbox")
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout
    assert path.read_bytes() == written
    assert backups(path) == [backup]

    # What a host does with the entry: start exactly that command, then initialize and list the tools.
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=subprocess_env(HOME=str(tmp_path)))
    async with Client(params, mode="legacy") as client:
        assert client.server_info is not None and client.server_info.name == "musicgpt-mcp"
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert {"extract_stems", "get_extraction", "download_stems"} <= names


def test_a_file_that_is_not_json_is_left_alone(tmp_path: Path) -> None:
    path = desktop_config(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"mcpServers": {"other": ')
    result = install(tmp_path, "claude-desktop", "--sandbox")
    assert result.returncode == 2
    assert f"{path} is not valid JSON" in result.stderr and "Nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_text() == '{"mcpServers": {"other": '
    assert backups(path) == []


def test_the_key_is_written_but_never_shown_and_a_reinstall_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / ".cursor" / "mcp.json"
    preview = install(tmp_path, "cursor", "--dry-run", MUSICGPT_API_KEY=SECRET_KEY)
    assert preview.returncode == 0, preview.stderr
    assert "****" + SECRET_KEY[-4:] in preview.stdout and "Dry run" in preview.stdout
    assert not path.exists()

    done = install(tmp_path, "cursor", "--api-key", SECRET_KEY)
    assert done.returncode == 0, done.stderr
    assert SECRET_KEY not in done.stdout + done.stderr
    entry = json.loads(path.read_text())["mcpServers"]["musicgpt"]
    assert entry == {"command": PYTHON, "args": ["-m", "musicgpt_mcp"], "env": {"MUSICGPT_API_KEY": SECRET_KEY}}
    # A new file holding a key is private.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Run again without a key in sight: the installed one is kept, the file untouched.
    before = path.read_bytes()
    again = install(tmp_path, "cursor")
    assert again.returncode == 0, again.stderr
    assert path.read_bytes() == before


def test_without_a_key_nothing_is_written_and_the_way_out_is_named(tmp_path: Path) -> None:
    result = install(tmp_path, "cursor")
    assert result.returncode == 2
    assert "--api-key" in result.stderr and "MUSICGPT_API_KEY" in result.stderr and "--sandbox" in result.stderr
    assert not (tmp_path / ".cursor").exists()


def test_vscode_asks_for_the_key_itself_and_keeps_other_servers_and_inputs(tmp_path: Path) -> None:
    path = tmp_path / "project" / ".vscode" / "mcp.json"
    path.parent.mkdir(parents=True)
    other_input = {"type": "promptString", "id": "other-token", "password": True}
    path.write_text(json.dumps({"servers": {"other": OTHER}, "inputs": [other_input]}, indent=4))
    result = install(tmp_path, "vscode", "--config", str(path), "--api-key", SECRET_KEY)
    assert result.returncode == 0, result.stderr
    document = json.loads(path.read_text())
    assert SECRET_KEY not in path.read_text()
    assert document["servers"]["other"] == OTHER
    assert document["servers"]["musicgpt"] == {
        "type": "stdio",
        "command": PYTHON,
        "args": ["-m", "musicgpt_mcp"],
        "env": {"MUSICGPT_API_KEY": "${input:musicgpt-api-key}"},
    }
    assert document["inputs"] == [
        other_input,
        {"type": "promptString", "id": "musicgpt-api-key", "description": "MusicGPT API key", "password": True},
    ]
    assert "secret storage" in result.stdout


def test_a_linked_config_file_stays_a_link(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles" / "cursor.json"
    dotfiles.parent.mkdir()
    dotfiles.write_text(json.dumps({"mcpServers": {"other": OTHER}}))
    link = tmp_path / ".cursor" / "mcp.json"
    link.parent.mkdir()
    link.symlink_to(dotfiles)
    result = install(tmp_path, "cursor", "--sandbox")
    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert set(json.loads(dotfiles.read_text())["mcpServers"]) == {"other", "musicgpt"}


def test_claude_code_gets_the_command_printed_without_the_key(tmp_path: Path) -> None:
    result = install(tmp_path, "claude-code", "--api-key", SECRET_KEY)
    assert result.returncode == 0, result.stderr
    assert SECRET_KEY not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "claude mcp remove musicgpt --scope user 2>/dev/null"
    assert lines[1] == (
        f'claude mcp add musicgpt --scope user --env MUSICGPT_API_KEY="$MUSICGPT_API_KEY" -- {PYTHON} -m musicgpt_mcp'
    )
    assert "set it first, or run this with --run" in result.stdout


def test_claude_code_run_replaces_the_entry_with_the_key(tmp_path: Path) -> None:
    # A stand-in for Claude Code's `claude`, on PATH, that records what it was asked.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    fake = bin_dir / "claude"
    fake.write_text(
        f"#!{PYTHON}\nimport json, sys\nwith open({str(calls)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake.chmod(0o755)
    result = install(
        tmp_path, "claude-code", "--run", MUSICGPT_API_KEY=SECRET_KEY, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    )
    assert result.returncode == 0, result.stderr
    assert SECRET_KEY not in result.stdout + result.stderr
    recorded: list[list[str]] = [json.loads(line) for line in calls.read_text().splitlines()]
    assert recorded == [
        ["mcp", "remove", "musicgpt", "--scope", "user"],
        [
            "mcp",
            "add",
            "musicgpt",
            "--scope",
            "user",
            "--env",
            f"MUSICGPT_API_KEY={SECRET_KEY}",
            "--",
            PYTHON,
            "-m",
            "musicgpt_mcp",
        ],
    ]


def test_an_environment_in_a_cache_is_started_with_uvx_from_where_it_came(tmp_path: Path) -> None:
    """uvx builds its environments in uv's cache, which `uv cache clean` may empty: an entry naming that
    Python would break, so it names uvx and the source this package was installed from instead."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    ephemeral = tmp_path / "cache" / "archive-v0" / "abc123"
    command = server_command(prefix=ephemeral, executable=str(ephemeral / "bin" / "python"))
    assert Path(command[0]).name.startswith("uvx")
    # This checkout is installed (editable) from its folder, as `uvx --from <checkout>` would have it.
    assert command[1:] == ["--from", str(REPO), "musicgpt-mcp"]
    # A project's own .venv tags itself as a cache too; that one is kept.
    venv = tmp_path / "project" / ".venv"
    venv.mkdir(parents=True)
    (venv / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    assert server_command(prefix=venv, executable="/p/python") == ["/p/python", "-m", "musicgpt_mcp"]
