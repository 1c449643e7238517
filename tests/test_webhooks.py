"""webhook_url: MusicGPT POSTs the finished job (with links to the stems) there, so only addresses the
user configured in MUSICGPT_MCP_WEBHOOK_URLS are accepted, by the server and by the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from musicgpt_mcp.config import Settings
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.server import create_server

from .conftest import SECRET_KEY, TMP, connect, make_settings
from .test_journey import webhook_receiver  # noqa: F401 - a fixture
from .test_status import text_of

pytestmark = pytest.mark.anyio

PREFIX = "https://hooks.example.com/musicgpt"


async def call(sandbox: Sandbox, hook: str, **settings: Any) -> Any:
    async with connect(make_settings(sandbox, **settings)) as client:
        return await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3", "webhook_url": hook})


async def test_unset_refuses_every_webhook(sandbox: Sandbox, song: Path) -> None:
    """A steered model cannot send the user's private audio's stems to its own address."""
    async with connect(make_settings(sandbox)) as client:
        result = await client.call_tool(
            "extract_stems", {"audio_file": str(song), "webhook_url": "https://attacker.example/collect"}
        )
    assert result.is_error
    assert text_of(result) == (
        "Error executing tool extract_stems: webhook_url was refused: no webhook addresses are configured. "
        "MusicGPT would POST the finished job, with links to the stems, to that address, so only addresses the "
        "user listed in MUSICGPT_MCP_WEBHOOK_URLS are allowed. Omit webhook_url, or ask the user to add its "
        "prefix to MUSICGPT_MCP_WEBHOOK_URLS in the server's environment and restart the server. Nothing was "
        "submitted."
    )
    assert sandbox.state.submits() == []


@pytest.mark.parametrize(
    "hook",
    [
        PREFIX,
        PREFIX + "?secret=s3",
        PREFIX + "/",
        PREFIX + "/jobs/1",
        "HTTPS://Hooks.Example.com:443/musicgpt",
    ],
)
async def test_addresses_under_a_prefix_are_sent(sandbox: Sandbox, hook: str) -> None:
    result = await call(sandbox, hook, webhook_urls=(PREFIX,))
    assert not result.is_error, text_of(result)
    [received] = sandbox.state.submits()
    assert received.fields["webhook_url"] == hook


@pytest.mark.parametrize(
    "hook",
    [
        "https://hooks.example.com.evil.net/musicgpt",
        "https://evil.net/musicgpt?https://hooks.example.com/musicgpt",
        "https://hooks.example.com:8443/musicgpt",
        "http://hooks.example.com/musicgpt",
        "https://hooks.example.com/musicgpt-evil",
        "https://hooks.example.com/musicgp",
        "https://hooks.example.com/other",
    ],
)
async def test_addresses_outside_every_prefix_are_refused(sandbox: Sandbox, hook: str) -> None:
    result = await call(sandbox, hook, webhook_urls=(PREFIX, "https://other.example.net/"))
    assert result.is_error
    assert text_of(result).endswith(
        "does not start with any of the addresses in MUSICGPT_MCP_WEBHOOK_URLS, so it was refused. Omit "
        "webhook_url, use an address the user configured, or ask the user to add this one to "
        "MUSICGPT_MCP_WEBHOOK_URLS and restart the server. Nothing was submitted."
    )
    assert sandbox.state.submits() == []


@pytest.mark.parametrize(
    "hook",
    [
        "https://hooks.example.com/musicgpt/../admin",
        "https://hooks.example.com/musicgpt/%2e%2e/admin",
        "https://hooks.example.com/musicgpt/%2E./admin",
        # The third hostile review's spellings: Tomcat's path parameters, a double encoding, a NUL, an encoded
        # slash (one segment on paper, two for a server that decodes it).
        "https://hooks.example.com/musicgpt/..;/admin",
        "https://hooks.example.com/musicgpt/%252e%252e/admin",
        "https://hooks.example.com/musicgpt/..%00/admin",
        "https://hooks.example.com/musicgpt%2fevil",
        "https://hooks.example.com/musicgpt/x;jsessionid=1",
        "https://hooks.example.com/musicgpt/a%5c..%5cadmin",
    ],
)
async def test_paths_that_a_server_may_read_as_another_are_refused(sandbox: Sandbox, hook: str) -> None:
    result = await call(sandbox, hook, webhook_urls=(PREFIX,))
    assert result.is_error
    assert "its path has a dot segment, an encoded dot, slash or percent sign" in text_of(result)
    assert sandbox.state.submits() == []


async def test_credentials_trick_is_refused(sandbox: Sandbox) -> None:
    result = await call(sandbox, "https://hooks.example.com@evil.net/musicgpt", webhook_urls=(PREFIX,))
    assert result.is_error
    assert "webhook_url must not carry a user name or password" in text_of(result)
    assert sandbox.state.submits() == []


async def test_prefixes_come_from_the_environment(sandbox: Sandbox) -> None:
    env = {
        "MUSICGPT_API_KEY": SECRET_KEY,
        "MUSICGPT_BASE_URL": sandbox.base_url,
        "MUSICGPT_MCP_ALLOWED_DIRS": str(TMP),
        "MUSICGPT_MCP_WEBHOOK_URLS": f"  {PREFIX}\n https://second.example.org/in  ",
    }
    args = {"audio_url": "https://example.com/a.mp3", "webhook_url": "https://second.example.org/in/x"}
    async with Client(create_server(lambda: Settings.from_env(env)), raise_exceptions=True) as client:
        accepted = await client.call_tool("extract_stems", args)
    assert not accepted.is_error, text_of(accepted)
    env["MUSICGPT_MCP_WEBHOOK_URLS"] = "hooks.example.com"
    async with Client(create_server(lambda: Settings.from_env(env)), raise_exceptions=True) as client:
        broken = await client.call_tool("extract_stems", args)
    assert broken.is_error
    assert "MUSICGPT_MCP_WEBHOOK_URLS must list http(s) URLs separated by spaces" in text_of(broken)


async def test_sandbox_posts_only_to_configured_webhooks(
    sandbox: Sandbox,
    webhook_receiver: tuple[str, list[dict[str, Any]]],  # noqa: F811 - the fixture
) -> None:
    """The sandbox applies the same rule, whoever submits to it."""
    url, received = webhook_receiver
    sandbox.state.eta = 0

    async def submit(hook: str) -> None:
        async with httpx2.AsyncClient() as http:
            response = await http.post(
                sandbox.base_url + "/v1/Extraction",
                headers={"Authorization": SECRET_KEY},
                data={"audio_url": "https://example.com/a.mp3", "webhook_url": hook},
            )
        assert response.status_code == 200

    await submit(url)  # the sandbox was configured with no prefix
    sandbox.state.webhook_urls = (url.rsplit("/", 1)[0] + "/elsewhere",)
    await submit(url)
    with anyio.fail_after(10):
        while len(sandbox.state.webhooks) < 2:
            await anyio.sleep(0.05)
    assert [w.error for w in sandbox.state.webhooks] == ["not a configured webhook prefix"] * 2
    assert received == []
    sandbox.state.webhook_urls = (url.split("?")[0],)
    await submit(url)
    with anyio.fail_after(10):
        while not received:
            await anyio.sleep(0.05)
