"""The whole journey a user asks for, as hosts run it: submit, wait with progress, download."""

from __future__ import annotations

import json
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from musicgpt_mcp.musicgpt.contract import parse_stem_map
from musicgpt_mcp.sandbox import Sandbox

from .conftest import SECRET_KEY, connect, make_settings
from .test_status import text_of
from .test_stdio import server_params

pytestmark = pytest.mark.anyio


async def test_stdio_journey_against_builtin_sandbox(song: Path, tmp_path: Path) -> None:
    out = tmp_path / "Music"
    params = server_params("--sandbox", "--sandbox-eta", "2", MUSICGPT_MCP_OUTPUT_DIR=str(out))
    updates: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(message or "")

    async with Client(params) as client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        prompts = sorted(p.name for p in (await client.list_prompts()).prompts)
        submitted = await client.call_tool(
            "extract_stems", {"audio_file": str(song), "stems": ["vocals", "instrumental"]}
        )
        task_id = submitted.structured_content["task_id"]  # type: ignore[index]
        status = await client.call_tool(
            "get_extraction", {"task_id": task_id, "wait_seconds": 30}, progress_callback=on_progress
        )
        saved = await client.call_tool("download_stems", {"task_id": task_id, "format": "wav"})
    assert tools == ["download_stems", "extract_stems", "get_extraction", "list_extractions"]  # no Apps: no player tool
    assert prompts == ["drum_stems", "karaoke_track", "practice_track"]
    assert status.structured_content["succeeded"] is True  # type: ignore[index]
    assert updates
    assert updates[-1] == "finished"
    files = saved.structured_content["files"]  # type: ignore[index]
    assert [f["stem"] for f in files] == ["vocals", "instrumental"]
    for f in files:
        path = Path(f["path"])
        assert path.is_relative_to(out)
        with wave.open(str(path)) as audio:
            assert audio.getnframes() > 1000
    assert "Saved 2 stem files for" in text_of(saved)


async def test_tool_annotations_for_results() -> None:
    from pydantic import SecretStr

    from musicgpt_mcp.config import Settings

    async with connect(Settings(api_key=SecretStr("x"), base_url="http://127.0.0.1:9")) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    get, download = tools["get_extraction"], tools["download_stems"]
    assert get.annotations is not None
    assert get.annotations.read_only_hint is True
    assert download.annotations is not None
    assert (download.annotations.read_only_hint, download.annotations.destructive_hint) == (False, False)
    assert download.annotations.idempotent_hint is True
    assert get.output_schema is not None
    assert download.output_schema is not None
    assert set(get.output_schema["required"]) >= {"task_id", "status", "done", "stems", "conversion_cost"}
    assert download.input_schema["properties"]["format"]["enum"] == ["mp3", "wav"]
    assert get.input_schema["required"] == ["task_id"]


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook?secret=abc", received
    server.shutdown()


async def test_sandbox_calls_the_webhook(
    sandbox: Sandbox, song: Path, webhook_receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook_receiver
    prefix = url.split("?")[0]
    sandbox.state.eta = 1
    sandbox.state.webhook_urls = (prefix,)
    async with connect(make_settings(sandbox, webhook_urls=(prefix,))) as client:
        submitted = await client.call_tool(
            "extract_stems", {"audio_file": str(song), "stems": ["drums"], "webhook_url": url}
        )
        task_id = submitted.structured_content["task_id"]  # type: ignore[index]
        await client.call_tool("get_extraction", {"task_id": task_id, "wait_seconds": 10})
    import anyio

    with anyio.fail_after(10):
        while len(received) < 2:
            await anyio.sleep(0.1)
    # Twice, as MusicGPT does, the second time without a status.
    payload, again = received
    assert payload["task_id"] == again["task_id"] == task_id
    assert (payload["status"], "status" in again) == ("COMPLETED", False)
    assert parse_stem_map(payload["conversion_path"]) == {"drums": f"{sandbox.origin}/files/{task_id}/drums.mp3"}
    assert again["conversion_path"] == payload["conversion_path"]
    assert SECRET_KEY not in json.dumps(received)
