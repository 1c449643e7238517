"""Run the MusicGPT MCP server the way an assistant would: split a song into stems and save them.

    uv run python examples/quickstart.py                   # offline, against the built-in sandbox
    MUSICGPT_API_KEY=... uv run python examples/quickstart.py ~/Music/song.mp3   # the real API (spends credits)
    MUSICGPT_API_KEY=... uv run python examples/quickstart.py https://example.com/song.mp3

It starts `musicgpt-mcp` as a subprocess over stdio with the MCP SDK's client, exactly as Claude
Desktop or Cursor would, then runs the whole journey: extract_stems, get_extraction (waiting,
with a progress bar), download_stems, and prints a table of the files saved. Offline, the files
go to a temporary folder; with a key, to MUSICGPT_MCP_OUTPUT_DIR (default ~/Music/MusicGPT).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from musicgpt_mcp.sandbox.audio import wav_tone


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


async def run(source: str | None) -> int:
    real = bool(os.environ.get("MUSICGPT_API_KEY")) and source is not None
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")}
    env["MUSICGPT_MCP_LOG_LEVEL"] = os.environ.get("MUSICGPT_MCP_LOG_LEVEL", "WARNING")  # keep the demo readable
    args = ["-m", "musicgpt_mcp"]
    if real:
        env["MUSICGPT_API_KEY"] = os.environ["MUSICGPT_API_KEY"]
        if os.environ.get("MUSICGPT_BASE_URL"):
            env["MUSICGPT_BASE_URL"] = os.environ["MUSICGPT_BASE_URL"]
    else:
        args.append("--sandbox")
    print(f"Server: {'MusicGPT (real API, spends credits)' if real else 'built-in sandbox (offline)'}")

    with tempfile.TemporaryDirectory() as tmp:
        if not real:
            # The demo song and its stems live in a temporary folder: allow exactly that folder.
            env["MUSICGPT_MCP_OUTPUT_DIR"] = str(Path(tmp) / "stems")
            env["MUSICGPT_MCP_ALLOWED_DIRS"] = str(Path(tmp).resolve())
        else:
            for name in ("MUSICGPT_MCP_OUTPUT_DIR", "MUSICGPT_MCP_ALLOWED_DIRS"):
                if os.environ.get(name):
                    env[name] = os.environ[name]
        if source is None or not real:
            arguments: dict[str, object] = {"audio_file": str(demo_song(Path(tmp)))}
        elif source.startswith(("http://", "https://")):
            arguments = {"audio_url": source}
        else:
            arguments = {"audio_file": str(Path(source).expanduser().resolve())}
        arguments["stems"] = ["vocals", "drums", "bass"]

        params = StdioServerParameters(command=sys.executable, args=args, env=env)
        async with Client(params) as client:
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
            files = saved.structured_content["files"]
            print(f"   Saved in {saved.structured_content['directory']}:\n")
            print(f"   {'stem':<14} {'format':<7} {'bytes':>10}  file")
            for f in files:
                print(f"   {f['stem']:<14} {f['format']:<7} {f['bytes']:>10}  {Path(f['path']).name}")
            for skipped in saved.structured_content["skipped"]:
                print(f"   not saved: {skipped['stem']}: {skipped['reason']}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="a local audio file or an http(s) URL (real API only)")
    args = parser.parse_args()
    sys.exit(anyio.run(run, args.source))


if __name__ == "__main__":
    main()
