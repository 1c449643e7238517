"""The third hostile review's findings (issue 24), each re-enacted through the protocol as the review did it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from mcp.types import ListRootsResult, Root

from musicgpt_mcp.sandbox import Sandbox

from .support.http_server import serve_http
from .test_remote import connect_http, remote, structured
from .test_status import text_of

pytestmark = pytest.mark.anyio


# --- 1. a remote caller's roots are not folders on the server's disk -------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_remote_clients_roots_do_not_open_the_servers_disk(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    """A hosted server with an output folder and no MUSICGPT_MCP_ALLOWED_DIRS: a client offering a root
    elsewhere on the server's disk must not get stems written there, nor even be asked for its roots."""
    sandbox.state.eta = 0
    elsewhere = tmp_path / "not-the-output-folder"
    elsewhere.mkdir()
    asked: list[str] = []

    async def roots(context: Any) -> ListRootsResult:
        asked.append("roots/list")
        return ListRootsResult(roots=[Root(uri=elsewhere.as_uri(), name="evil")])  # type: ignore[arg-type]

    settings = dataclasses.replace(remote(sandbox), output_dir=tmp_path / "out", output_dir_configured=True)
    with serve_http(settings) as server:
        async with connect_http(server.url, mode=mode, list_roots_callback=roots) as client:
            task = structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"}))
            target = elsewhere / "planted"
            refused = await client.call_tool("download_stems", {"task_id": task["task_id"], "output_dir": str(target)})
            local = await client.call_tool("extract_stems", {"audio_file": str(elsewhere / "song.wav")})
    assert refused.is_error, text_of(refused)
    assert "outside the allowed output folder" in text_of(refused)
    assert not target.exists() and list(elsewhere.iterdir()) == []
    assert local.is_error and "local files are refused here" in text_of(local)
    assert asked == []  # the server never asked: a remote client's roots mean nothing on this disk
