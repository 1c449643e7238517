"""The MCP Bundle (manifest.json, .mcpbignore, scripts/pack_bundle.py): what Claude Desktop installs.

The first tests need nothing beside Python. The rest use the pinned MCPB CLI and library (`npm ci`): they
validate the manifest, pack the bundle, unpack it into an empty folder and start the server from there as
Claude Desktop does for `uv` bundles, with the settings turned into the command line and environment by the
MCPB library's own substitution.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import jsonschema
import pytest
from mcp import Client, StdioServerParameters

from musicgpt_mcp import __version__, cli
from musicgpt_mcp.config import Settings
from musicgpt_mcp.envvars import ENV_VARS
from musicgpt_mcp.sandbox import Sandbox

from .conftest import REPO, SECRET_KEY, connect, renders_apps, require, require_node_tools, subprocess_env, wav_bytes

pytestmark = pytest.mark.anyio

MANIFEST: dict[str, Any] = json.loads((REPO / "manifest.json").read_text())
MCP_CONFIG: dict[str, Any] = MANIFEST["server"]["mcp_config"]
PLACEHOLDER = re.compile(r"\$\{user_config\.([A-Za-z0-9_]+)\}")
MCPB_CLI = REPO / "node_modules" / "@anthropic-ai" / "mcpb" / "dist" / "cli" / "cli.js"
# What the bundle must hold at its top level: the manifest and icon, what uv needs to build the
# environment (pyproject.toml, uv.lock; README.md is pyproject's readme), the licence, and the package.
TOP_LEVEL = {"manifest.json", "icon.png", "pyproject.toml", "uv.lock", "README.md", "LICENSE", "musicgpt_mcp"}
# Never in the bundle, at any depth.
FORBIDDEN_PARTS = {".venv", "venv", "tests", ".git", "node_modules", "dist", "benchmarks", "__pycache__", ".hypothesis"}


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _server_args(args: list[str]) -> list[str]:
    """The arguments musicgpt_mcp itself receives, from the host's `uv run ... -m musicgpt_mcp ...`."""
    start = args.index("musicgpt_mcp")
    assert args[start - 1] == "-m"
    return args[start + 1 :]


# ---------------------------------------------------------------- the manifest, without Node


def test_manifest_version_follows_the_package() -> None:
    assert MANIFEST["version"] == __version__
    assert MANIFEST["manifest_version"] == "0.4"


def test_manifest_maps_only_variables_the_server_reads() -> None:
    """MUSICGPT_MCP_MAX_CREDITS_PER_DAY and MUSICGPT_MCP_CONFIRM come with the job ledger; until that
    lands in envvars.ENV_VARS this test fails, on purpose."""
    assert set(MCP_CONFIG["env"]) <= {var.name for var in ENV_VARS}


def test_every_setting_reaches_the_server_and_the_key_stays_off_the_command_line() -> None:
    settings = MANIFEST["user_config"]
    in_env = {m for value in MCP_CONFIG["env"].values() for m in PLACEHOLDER.findall(value)}
    in_args = {m for value in MCP_CONFIG["args"] for m in PLACEHOLDER.findall(value)}
    assert in_env | in_args == set(settings), "a setting nothing reads, or a placeholder with no setting"
    # Command lines are visible to every user of the machine; the key travels in the environment only.
    assert not {name for name in in_args if settings[name].get("sensitive")}
    key = settings["api_key"]
    assert key["type"] == "string" and key["sensitive"] is True and key["required"] is True
    assert MCP_CONFIG["env"]["MUSICGPT_API_KEY"] == "${user_config.api_key}"
    # Only the key is required: everything else has a working default in the server.
    assert [name for name, spec in settings.items() if spec.get("required")] == ["api_key"]
    # A list of folders can only be substituted as separate arguments (see config.folders).
    assert settings["allowed_dirs"]["multiple"] is True
    assert MCP_CONFIG["args"][-2:] == ["--allowed-dirs", "${user_config.allowed_dirs}"]


def test_manifest_entry_point_is_what_the_command_runs() -> None:
    server = MANIFEST["server"]
    assert server["type"] == "uv"
    assert (REPO / server["entry_point"]).is_file()
    module = server["entry_point"].removesuffix("/__main__.py").replace("/", ".")
    args = MCP_CONFIG["args"]
    assert args[:3] == ["run", "--directory", "${__dirname}"]
    assert {"--frozen", "--no-dev"} <= set(args[: args.index("python")])  # the lock as is; no test tools
    assert args[args.index("-m") + 1] == module


async def test_manifest_lists_exactly_what_the_server_offers() -> None:
    # Claude Desktop, the bundle's host, renders MCP Apps: it is offered the app-only tools too.
    async with connect(Settings(api_key=None), **renders_apps()) as client:
        tools = (await client.list_tools()).tools
        prompts = (await client.list_prompts()).prompts
    assert sorted(t.name for t in tools) == sorted(t["name"] for t in MANIFEST["tools"])
    served = {p.name: [a.name for a in p.arguments or []] for p in prompts}
    assert served == {p["name"]: p.get("arguments", []) for p in MANIFEST["prompts"]}
    for prompt in MANIFEST["prompts"]:
        for argument in prompt.get("arguments", []):
            assert "${arguments." + argument + "}" in prompt["text"], (prompt["name"], argument)
    assert all(entry.get("description") for entry in MANIFEST["tools"] + MANIFEST["prompts"])


def test_blank_settings_passed_as_placeholders_mean_the_defaults() -> None:
    """Claude Desktop passes an optional setting left blank as its literal placeholder."""
    key = {"MUSICGPT_API_KEY": SECRET_KEY}
    blank = {name: value for name, value in MCP_CONFIG["env"].items() if name != "MUSICGPT_API_KEY"}
    assert all(PLACEHOLDER.fullmatch(v) for v in blank.values())
    assert Settings.from_env({**key, **blank}) == Settings.from_env(key)
    # A field the user filled in and then cleared may come as an empty string instead.
    assert Settings.from_env({**key, **dict.fromkeys(blank, "")}) == Settings.from_env(key)
    # Before this rule the placeholder was read as a (relative) output folder named after it.
    assert Settings.from_env({**key, **blank}).output_dir == Path("~/Music/MusicGPT")


def test_folders_on_the_command_line_replace_the_variable(tmp_path: Path) -> None:
    a, b = tmp_path / "Songs A", tmp_path / "Songs B"
    env = {"MUSICGPT_MCP_ALLOWED_DIRS": str(tmp_path / "elsewhere")}
    given = cli.settings_from(cli._parser().parse_args(["--allowed-dirs", str(a), str(b)]), env)
    assert given.allowed_dirs == (a, b)
    # No folder given (the list was empty), or the host left the placeholder: the variable, else the default.
    for argv in (["--allowed-dirs"], ["--allowed-dirs", "${user_config.allowed_dirs}"], []):
        assert cli.settings_from(cli._parser().parse_args(argv), env).allowed_dirs == (tmp_path / "elsewhere",)
        assert cli.settings_from(cli._parser().parse_args(argv), {}).allowed_dirs is None
    # A relative folder is a problem with that setting: the tools that read or save files refuse (naming it).
    problems = cli.settings_from(cli._parser().parse_args(["--allowed-dirs", "music"]), {}).problems
    assert [(p.variable, str(p)) for p in problems] == [
        ("MUSICGPT_MCP_ALLOWED_DIRS", "--allowed-dirs must list absolute folders; 'music' is relative.")
    ]


def test_icon_is_the_committed_drawing() -> None:
    """icon.png holds exactly what scripts/make_icon.py draws (compared as pixels: zlib builds differ)."""
    icon = _script("make_icon")
    data = (REPO / MANIFEST["icon"]).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        chunks[kind] = chunks.get(kind, b"") + data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour) == (icon.SIZE, icon.SIZE, 8, 6) == (512, 512, 8, 6)
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = width * 4 + 1
    assert {raw[y * stride] for y in range(height)} == {0}  # filter type 0 on every row
    pixels = b"".join(raw[y * stride + 1 : (y + 1) * stride] for y in range(height))
    assert pixels == icon.pixels()
    assert len(data) < 64 * 1024


def test_readme_puts_the_bundle_first_among_the_hosts() -> None:
    readme = (REPO / "README.md").read_text()
    bundle = readme.index("## Install in Claude Desktop")
    assert bundle < readme.index('"mcpServers"')  # before any hand-written host configuration
    assert "releases" in readme[bundle : readme.index("\n## ", bundle + 1)]


# ---------------------------------------------------------------- the bundle, with the pinned MCPB tools


def _node(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    node = require_node_tools() / "node"
    return subprocess.run(
        [str(node), *args], input=stdin, capture_output=True, text=True, cwd=REPO, check=False, timeout=120
    )


def host_config(extension: Path, user_config: dict[str, Any]) -> dict[str, Any]:
    """command, args and env as the MCPB library makes them for this install and these settings."""
    request = {
        "manifest": MANIFEST,
        "extensionPath": str(extension),
        "userConfig": user_config,
        "systemDirs": {"HOME": str(Path.home())},
    }
    done = _node(str(REPO / "tests" / "mcpb_host.mjs"), stdin=json.dumps(request))
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


# An example only: the registry entry is checked for shape; nothing is published from here.
RELEASE_URL = (
    f"https://github.com/musicgpt-mcp/musicgpt-mcp/releases/download/v{__version__}/musicgpt-mcp-{__version__}.mcpb"
)


@dataclasses.dataclass(frozen=True)
class Packed:
    path: Path
    stdout: str


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Packed:
    require_node_tools()
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "pack_bundle.py"), "--out", str(out), "--release-url", RELEASE_URL],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    path = out / f"musicgpt-mcp-{__version__}.mcpb"
    assert done.stdout.splitlines()[0] == str(path)
    return Packed(path, done.stdout)


def test_mcpb_validates_the_manifest(tmp_path: Path) -> None:
    done = _node(str(MCPB_CLI), "validate", "manifest.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Manifest schema validation passes!" in done.stdout
    # The check can fail: a manifest that maps an environment variable to a number is refused.
    broken = json.loads(json.dumps(MANIFEST))
    broken["server"]["mcp_config"]["env"]["MUSICGPT_API_KEY"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(broken))
    assert _node(str(MCPB_CLI), "validate", str(tmp_path / "manifest.json")).returncode == 1


def test_bundle_holds_the_runtime_and_nothing_else(packed: Packed) -> None:
    with zipfile.ZipFile(packed.path) as bundle:
        entries = {info.filename: info for info in bundle.infolist() if not info.is_dir()}
        inside = json.loads(bundle.read("manifest.json"))
    assert {name.split("/")[0] for name in entries} == TOP_LEVEL
    assert inside == MANIFEST
    package = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "musicgpt_mcp").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    }
    assert {name for name in entries if name.startswith("musicgpt_mcp/")} == package
    for name, info in entries.items():
        parts = set(name.split("/"))
        assert not parts & FORBIDDEN_PARTS, name
        assert not any(part.startswith(".env") for part in parts), name
        assert info.file_size <= 1_000_000, f"{name} is {info.file_size} bytes"


def test_readme_states_the_bundle_size(packed: Packed) -> None:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"`musicgpt-mcp-<version>\.mcpb` \(about (\d+) kB\)", readme)
    assert match, "the README's Install in Claude Desktop section should state the bundle's size"
    stated, real = int(match.group(1)) * 1000, packed.path.stat().st_size
    assert 0.8 * real <= stated <= 1.2 * real, f"README says {stated} bytes, the bundle has {real}: update it"


def test_pack_prints_a_registry_entry_for_the_file_it_built(packed: Packed) -> None:
    digest = hashlib.sha256(packed.path.read_bytes()).hexdigest()
    assert f"sha256: {digest}" in packed.stdout
    entry = json.loads(packed.stdout.split("server.json package entry:\n", 1)[1])
    assert entry == {
        "registryType": "mcpb",
        "identifier": RELEASE_URL,
        "version": __version__,
        "fileSha256": digest,
        "transport": {"type": "stdio"},
    }
    schema = json.loads((REPO / "tests" / "data" / "server.schema.2025-12-11.json").read_text())
    server_json = json.loads((REPO / "server.json").read_text())
    server_json["packages"].append(entry)
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(server_json))
    assert not errors, [e.message for e in errors]


def test_blank_settings_through_the_mcpb_library_mean_the_defaults(tmp_path: Path) -> None:
    """Only the key filled in: what the host passes must give exactly the server's defaults."""
    config = host_config(tmp_path, {"api_key": SECRET_KEY})
    assert config["env"]["MUSICGPT_API_KEY"] == SECRET_KEY
    args = cli._parser().parse_args(_server_args(config["args"]))
    expected = cli.settings_from(cli._parser().parse_args([]), {"MUSICGPT_API_KEY": SECRET_KEY})
    assert cli.settings_from(args, config["env"]) == expected
    # And without the key, the host does not start the server at all.
    assert host_config(tmp_path, {}) is None


def _host_environment(**extra: str) -> dict[str, str]:
    """A small environment, as a host gives; uv's own settings and the machine's certificates pass, and
    the repository's .venv is taken off PATH so nothing of it can be reused."""
    env = subprocess_env(**extra)
    venv = str(REPO / ".venv")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(venv))
    for name, value in os.environ.items():
        if name.startswith(("UV_", "XDG_")) or name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            env.setdefault(name, value)
    env.pop("VIRTUAL_ENV", None)
    return env


async def test_bundle_runs_from_an_empty_folder_as_claude_desktop_starts_it(
    packed: Packed, sandbox: Sandbox, tmp_path: Path
) -> None:
    uv = shutil.which("uv")
    require(uv is not None, "uv", "install uv (https://docs.astral.sh/uv/)")
    assert uv is not None
    extension = tmp_path / "Claude Extensions" / "musicgpt-mcp"  # a space, as on macOS
    extension.mkdir(parents=True)
    with zipfile.ZipFile(packed.path) as bundle:
        bundle.extractall(extension)
    songs_a, songs_b, elsewhere, output = (tmp_path / n for n in ("Songs A", "Songs B", "Elsewhere", "Stems out"))
    for folder in (songs_a, songs_b, elsewhere):
        folder.mkdir()
    song = songs_a / "My Song.wav"
    song.write_bytes(wav_bytes())
    (elsewhere / "Other.wav").write_bytes(wav_bytes())
    settings = {
        "api_key": SECRET_KEY,
        "output_dir": str(output),
        "allowed_dirs": [str(songs_a), str(songs_b)],
        "max_credits_per_day": 1000,
        "confirm": "auto",
    }
    config = host_config(extension, settings)
    # The manifest maps no base URL (users talk to MusicGPT); the test points the server at the sandbox,
    # which also checks that the key from the settings form is the one sent.
    venv = tmp_path / "environment"
    # It also lists the sandbox's loopback origin, from which stems download (real storage is public).
    env = _host_environment(
        MUSICGPT_BASE_URL=sandbox.base_url,
        MUSICGPT_MCP_STORAGE_HOSTS=sandbox.netloc,
        UV_PROJECT_ENVIRONMENT=str(venv),
    )
    env.update(config["env"])
    sandbox.state.eta = 1
    # The host runs its own uv with the manifest's arguments; the working folder is not the bundle's.
    params = StdioServerParameters(command=uv, args=config["args"], env=env, cwd=str(tmp_path))
    with anyio.fail_after(240):  # a cold uv cache downloads the dependencies first
        async with Client(params, **renders_apps()) as client:
            tools = (await client.list_tools()).tools
            prompts = (await client.list_prompts()).prompts
            refused = await client.call_tool("extract_stems", {"audio_file": str(elsewhere / "Other.wav")})
            quoted = await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]})
            # Claude Desktop renders the stem view but cannot ask: the user approves the quote there, as here.
            assert not quoted.is_error, quoted.content
            assert quoted.structured_content is not None and quoted.structured_content["state"] == "awaiting_approval"
            offer = (quoted.meta or {})["musicgpt-mcp/quote"]
            submitted = await client.call_tool(
                "confirm_extraction", {"quote": offer["id"], "approval": offer["approval"]}
            )
            assert not submitted.is_error, submitted.content
            assert submitted.structured_content is not None
            task_id = submitted.structured_content["task_id"]
            for _ in range(5):
                status = await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 20})
                assert not status.is_error, status.content
                assert status.structured_content is not None
                if status.structured_content["done"]:
                    break
            assert status.structured_content["succeeded"] is True
            saved = await client.call_tool("download_stems", {"task_id": task_id})
    assert sorted(t.name for t in tools) == sorted(t["name"] for t in MANIFEST["tools"])
    assert sorted(p.name for p in prompts) == sorted(p["name"] for p in MANIFEST["prompts"])
    # The folders from the settings form, and only they, may be read.
    assert refused.is_error
    refusal = refused.content[0].text  # type: ignore[union-attr]
    assert "is outside the folders files may be read from" in refusal
    assert str(songs_a.resolve()) in refusal and str(songs_b.resolve()) in refusal
    [received] = sandbox.state.submits()
    assert received.authorization == SECRET_KEY
    # The stems land in the output folder from the settings form.
    assert not saved.is_error, saved.content
    assert saved.structured_content is not None
    files = [Path(f["path"]) for f in saved.structured_content["files"]]
    assert files and all(f.is_file() and f.is_relative_to(output) for f in files)
    # A fresh environment, built where the host said, from the bundle's own pyproject.toml and uv.lock.
    assert (venv / "pyvenv.cfg").is_file()
    assert not (extension / ".venv").exists()
