"""Run the MusicGPT MCP server the way an assistant would, and submit a stem extraction.

    uv run python examples/quickstart.py                   # offline, against the built-in sandbox
    MUSICGPT_API_KEY=... uv run python examples/quickstart.py ~/Music/song.mp3   # the real API (spends credits)
    MUSICGPT_API_KEY=... uv run python examples/quickstart.py https://example.com/song.mp3

It starts `musicgpt-mcp` as a subprocess over stdio with the MCP SDK's client, exactly as Claude
Desktop or Cursor would, and prints what the model would see.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import struct
import sys
import tempfile
import wave
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters


def demo_song(directory: Path) -> Path:
    """Two seconds of a chord, as a real WAV file, so the sandbox has something to split."""
    rate = 22050
    frames = bytearray()
    for i in range(rate * 2):
        t = i / rate
        value = sum(math.sin(2 * math.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
        frames += struct.pack("<h", int(value * 20000))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    path = directory / "quickstart-chord.wav"
    path.write_bytes(buf.getvalue())
    return path


async def run(source: str | None) -> int:
    real = bool(os.environ.get("MUSICGPT_API_KEY")) and source is not None
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")}
    args = ["-m", "musicgpt_mcp"]
    if real:
        env["MUSICGPT_API_KEY"] = os.environ["MUSICGPT_API_KEY"]
        if os.environ.get("MUSICGPT_BASE_URL"):
            env["MUSICGPT_BASE_URL"] = os.environ["MUSICGPT_BASE_URL"]
    else:
        args.append("--sandbox")
    print(f"Server: {'MusicGPT (real API, spends credits)' if real else 'built-in sandbox (offline)'}")

    with tempfile.TemporaryDirectory() as tmp:
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
            print(f"Calling extract_stems with {json.dumps(arguments)}")
            result = await client.call_tool("extract_stems", arguments)
            text = "".join(getattr(block, "text", "") for block in result.content)
            if result.is_error:
                print(f"Error: {text}", file=sys.stderr)
                return 1
            print(text)
            print(json.dumps(result.structured_content, indent=2))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="a local audio file or an http(s) URL (real API only)")
    args = parser.parse_args()
    sys.exit(anyio.run(run, args.source))


if __name__ == "__main__":
    main()
