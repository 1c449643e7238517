"""The API key appears nowhere: not in results, errors, progress, resources, nor the server's log."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from musicgpt_mcp.sandbox import Fault, Sandbox

from .conftest import PYTHON, SECRET_KEY, TMP, subprocess_env

pytestmark = pytest.mark.anyio

ECHO = json.dumps({"success": False, "error": f"bad key {SECRET_KEY}", "message": SECRET_KEY}).encode()


async def test_key_is_nowhere(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    sandbox.state.eta = 1
    seen: list[Any] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    with tempfile.TemporaryFile() as errlog:
        params = StdioServerParameters(
            command=PYTHON,
            args=["-m", "musicgpt_mcp"],
            env=subprocess_env(
                MUSICGPT_API_KEY=SECRET_KEY,
                MUSICGPT_BASE_URL=sandbox.base_url,
                MUSICGPT_MCP_ALLOWED_DIRS=str(TMP),
                MUSICGPT_MCP_OUTPUT_DIR=str(tmp_path / "out"),
                MUSICGPT_MCP_LOG_LEVEL="DEBUG",  # the most talkative the server gets
                MUSICGPT_MCP_WEBHOOK_URLS="https://h/",
                MUSICGPT_MCP_STORAGE_HOSTS=sandbox.netloc,
            ),
        )
        from mcp.client.stdio import stdio_client

        async with Client(stdio_client(params, errlog=errlog)) as client:
            calls: list[Any] = []

            async def call(name: str, args: dict[str, Any]) -> None:
                calls.append(await client.call_tool(name, args, progress_callback=on_progress))

            await call("extract_stems", {"audio_file": str(song), "stems": ["vocals"]})
            task_id = calls[-1].structured_content["task_id"]
            await call("extract_stems", {"audio_url": "https://example.com/x.mp3", "webhook_url": "https://h/x"})
            for status in (400, 401, 402, 403, 422, 429, 500):
                sandbox.state.queue_fault("submit", Fault(status=status, body=ECHO))
                # force_new: the same URL was just submitted, and these calls must reach MusicGPT.
                await call("extract_stems", {"audio_url": "https://example.com/x.mp3", "force_new": True})
            sandbox.state.queue_fault("submit", Fault(status=200, body=ECHO))
            await call("extract_stems", {"audio_url": "https://example.com/x.mp3", "force_new": True})
            await call("extract_stems", {"audio_file": "/etc/passwd"})
            await call("get_extraction", {"task_id": task_id, "wait_seconds": 5})
            for status in (401, 404, 500):
                sandbox.state.queue_fault("status", Fault(status=status, body=ECHO))
                await call("get_extraction", {"task_id": task_id})
            sandbox.state.queue_fault("status", Fault(status=200, body=ECHO))
            await call("get_extraction", {"task_id": task_id})
            await call("get_extraction", {"task_id": "missing"})
            await call("download_stems", {"task_id": task_id})
            sandbox.state.queue_fault("download", Fault(status=403, body=ECHO))
            await call("download_stems", {"task_id": task_id, "format": "wav"})
            await call("download_stems", {"task_id": task_id, "output_dir": "/etc"})
            resource = await client.read_resource(f"musicgpt://extractions/{task_id}")
            prompt = await client.get_prompt("karaoke_track", {"audio": str(song)})
        errlog.seek(0)
        stderr = errlog.read().decode()

    everything = json.dumps(
        [c.model_dump(mode="json") for c in calls]
        + [resource.model_dump(mode="json"), prompt.model_dump(mode="json"), seen]
    )
    assert sum(1 for c in calls if c.is_error) >= 14  # the errors did happen
    assert "[redacted]" in everything  # and MusicGPT's echo of the key was caught
    assert "HTTP Request" in stderr  # the log was captured, at DEBUG
    assert SECRET_KEY not in everything
    assert SECRET_KEY not in stderr
    # The sandbox saw the key, so it was sent where it belongs.
    assert all(s.authorization == SECRET_KEY for s in sandbox.state.submits())
    assert all(d.authorization is None for d in sandbox.state.downloads)
