"""Run the MusicGPT MCP server the way an assistant would: split a song into stems and save them.

    uv run python examples/quickstart.py                   # offline, against the built-in sandbox
    MUSICGPT_API_KEY=... uv run python examples/quickstart.py ~/Music/song.mp3   # the real API (spends credits)
    MUSICGPT_API_KEY=... uv run python examples/quickstart.py https://example.com/song.mp3

It starts `musicgpt-mcp` as a subprocess over stdio with the MCP SDK's client, exactly as Claude
Desktop or Cursor would, then runs the whole journey: extract_stems, get_extraction (waiting,
with a progress bar), download_stems, and prints a table of the files saved and the folder they are
in. They stay there: MUSICGPT_MCP_OUTPUT_DIR (or --output-dir), else ~/Music/MusicGPT, as for the
server itself. Offline, the sandbox splits a two-second demo tone (its stems are tones too, and its
credits are made up); a song is sent only with a key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from musicgpt_mcp.sandbox.audio import wav_tone

PASSED_ON = ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR", "USERPROFILE", "XDG_STATE_HOME")


def demo_song(directory: Path) -> Path:
    """Two seconds of a tone, as a real WAV file (made by the sandbox's generator) to split."""
    path = directory / "quickstart-tone.wav"
    path.write_bytes(wav_tone(2.0, 220.0))
    return path


def show_progress(width: int = 30) -> Callable[[float, float | None, str | None], Awaitable[None]]:
    async def callback(progress: float, total: float | None, message: str | None) -> None:
        if total:
            done = min(1.0, progress / total)
            bar = "#" * int(done * width) + "-" * (width - int(done * width))
            print(f"\r  [{bar}] {progress:5.1f}s  {message or '':<45}", end="", file=sys.stderr, flush=True)
        else:
            print(f"\r  {message or '':<60}", end="", file=sys.stderr, flush=True)

    return callback


def text_of(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def choose_mode(source: str | None) -> bool:
    """True for the real API. Says why when the offline sandbox runs instead of what was asked for."""
    has_key = bool(os.environ.get("MUSICGPT_API_KEY", "").strip())
    if source is not None and not has_key:
        print(
            f"Note: {source} is not used. Without MUSICGPT_API_KEY this runs against the offline sandbox, which "
            "sends nothing anywhere and answers with made-up stems whatever it is given, so it splits a demo tone "
            f"instead. Set MUSICGPT_API_KEY to split {source} with MusicGPT (that spends credits).",
            file=sys.stderr,
        )
    elif source is None and has_key:
        print(
            "Note: MUSICGPT_API_KEY is set but no song was given, so this runs offline against the sandbox with a "
            "demo tone. Give a file or an https URL to split it with MusicGPT (that spends credits).",
            file=sys.stderr,
        )
    return has_key and source is not None


def server_setup(real: bool, tmp: Path, output_dir: Path | None) -> tuple[list[str], dict[str, str]]:
    """The server's arguments and environment: the real API with the key, or the sandbox."""
    env = {k: v for k, v in os.environ.items() if k in PASSED_ON}
    env["MUSICGPT_MCP_LOG_LEVEL"] = os.environ.get("MUSICGPT_MCP_LOG_LEVEL", "WARNING")  # keep the demo readable
    if output_dir is not None:
        env["MUSICGPT_MCP_OUTPUT_DIR"] = str(output_dir)
    elif os.environ.get("MUSICGPT_MCP_OUTPUT_DIR"):
        env["MUSICGPT_MCP_OUTPUT_DIR"] = os.environ["MUSICGPT_MCP_OUTPUT_DIR"]
    args = ["-m", "musicgpt_mcp"]
    if real:
        for name in ("MUSICGPT_API_KEY", "MUSICGPT_BASE_URL", "MUSICGPT_MCP_ALLOWED_DIRS"):
            if os.environ.get(name):
                env[name] = os.environ[name]
    else:
        args.append("--sandbox")
        # The demo song lives in a temporary folder: allow exactly that folder to be read.
        env["MUSICGPT_MCP_ALLOWED_DIRS"] = str(tmp.resolve())
    return args, env


def source_arguments(real: bool, source: str | None, tmp: Path) -> dict[str, Any]:
    if not real or source is None:
        arguments: dict[str, Any] = {"audio_file": str(demo_song(tmp))}
    elif source.startswith(("http://", "https://")):
        arguments = {"audio_url": source}
    else:
        arguments = {"audio_file": str(Path(source).expanduser().resolve())}
    return {**arguments, "stems": ["vocals", "drums", "bass"]}


async def journey(client: Client, arguments: dict[str, Any]) -> int:
    tools = [tool.name for tool in (await client.list_tools()).tools]
    print(f"Tools: {', '.join(tools)}")
    print(f"\n1. extract_stems {json.dumps(arguments)}")
    submitted = await client.call_tool("extract_stems", arguments)
    if submitted.is_error or submitted.structured_content is None:
        print(f"Error: {text_of(submitted)}", file=sys.stderr)
        return 1
    print(f"   {text_of(submitted)}")
    task_id = submitted.structured_content["task_id"]

    print("\n2. get_extraction (waiting)")
    while True:
        status = await client.call_tool(
            "get_extraction", {"task_id": task_id, "wait_seconds": 50}, progress_callback=show_progress()
        )
        print(file=sys.stderr)
        if status.is_error or status.structured_content is None:
            print(f"Error: {text_of(status)}", file=sys.stderr)
            return 1
        if status.structured_content["done"]:
            break
    print(f"   {text_of(status)}")
    if not status.structured_content["succeeded"]:
        return 1

    print("\n3. download_stems")
    saved = await client.call_tool("download_stems", {"task_id": task_id}, progress_callback=show_progress())
    print(file=sys.stderr)
    if saved.is_error or saved.structured_content is None:
        print(f"Error: {text_of(saved)}", file=sys.stderr)
        return 1
    show_saved(saved.structured_content)
    return 0


def show_saved(saved: dict[str, Any]) -> None:
    print(f"   {'stem':<14} {'format':<7} {'bytes':>10}  file")
    for f in saved["files"]:
        print(f"   {f['stem']:<14} {f['format']:<7} {f['bytes']:>10}  {Path(f['path']).name}")
    for skipped in saved["skipped"]:
        print(f"   not saved: {skipped['stem']}: {skipped['reason']}")
    # The folder stays after this script ends: open it to listen.
    print(f"\nThe stems are in: {saved['directory']}")


async def run(source: str | None, output_dir: Path | None = None) -> int:
    real = choose_mode(source)
    print(f"Server: {'MusicGPT (real API, spends credits)' if real else 'built-in sandbox (offline, made-up credits)'}")
    # Only the demo song is temporary; the stems go to the output folder, which stays.
    with tempfile.TemporaryDirectory() as tmp:
        args, env = server_setup(real, Path(tmp), output_dir)
        arguments = source_arguments(real, source, Path(tmp))
        async with Client(StdioServerParameters(command=sys.executable, args=args, env=env)) as client:
            return await journey(client, arguments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="a local audio file or an http(s) URL (real API only)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        metavar="FOLDER",
        help="where to keep the stems (default: MUSICGPT_MCP_OUTPUT_DIR, else ~/Music/MusicGPT)",
    )
    args = parser.parse_args()
    output_dir = args.output_dir.expanduser().resolve() if args.output_dir else None
    sys.exit(anyio.run(run, args.source, output_dir))


if __name__ == "__main__":
    main()
