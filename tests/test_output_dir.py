"""The output folder is checked when the server starts, not when the first paid job's stems arrive."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
from mcp import Client

from musicgpt_mcp.config import Settings
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.server import create_server

from .conftest import PYTHON, SECRET_KEY, connect, make_settings, subprocess_env
from .test_status import text_of

pytestmark = pytest.mark.anyio


async def test_a_relative_output_folder_is_refused_by_name(sandbox: Sandbox) -> None:
    env = {"MUSICGPT_API_KEY": SECRET_KEY, "MUSICGPT_BASE_URL": sandbox.base_url, "MUSICGPT_MCP_OUTPUT_DIR": "stems"}
    async with Client(create_server(lambda: Settings.from_env(env))) as client:
        result = await client.call_tool("download_stems", {"task_id": "any"})
    assert result.is_error
    assert "MUSICGPT_MCP_OUTPUT_DIR must be an absolute folder (such as ~/Music/MusicGPT); 'stems' is relative" in (
        text_of(result)
    )
    # ~ is a full path, not a relative one.
    assert Settings.from_env({"MUSICGPT_MCP_OUTPUT_DIR": "~/stems"}).output_dir == Path.home() / "stems"


def test_over_http_a_relative_output_folder_stops_the_start() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "musicgpt_mcp", "--transport", "http", "--port", "0"],
        capture_output=True,
        text=True,
        env=subprocess_env(MUSICGPT_MCP_OUTPUT_DIR="stems"),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "MUSICGPT_MCP_OUTPUT_DIR must be an absolute folder" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_an_output_folder_that_cannot_be_made_is_logged_at_start(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("in the way")
    settings = make_settings(sandbox, output_dir=blocker / "stems", output_dir_configured=True)
    with caplog.at_level(logging.WARNING, logger="musicgpt_mcp.server"):
        async with connect(settings) as client:
            await client.list_tools()
    assert (
        f"MUSICGPT_MCP_OUTPUT_DIR: {blocker} is a file, not a folder; download_stems cannot save stems until that "
        "is fixed"
    ) in caplog.messages


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
async def test_a_read_only_output_folder_is_logged_at_start(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    settings = make_settings(sandbox, output_dir=locked / "stems")
    with caplog.at_level(logging.WARNING, logger="musicgpt_mcp.server"):
        async with connect(settings) as client:
            await client.list_tools()
    assert any(
        f"the default output folder: {locked / 'stems'} is not writable by this user (it would be made inside {locked})"
        in m
        for m in caplog.messages
    ), caplog.messages


async def test_a_writable_output_folder_brings_no_warning(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="musicgpt_mcp.server"):
        async with connect(make_settings(sandbox, output_dir=tmp_path / "new" / "stems")) as client:
            await client.list_tools()
    assert not [m for m in caplog.messages if "output folder" in m or "OUTPUT_DIR" in m]
