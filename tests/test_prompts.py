"""Prompts as a person uses them: arguments typed into a host's form, with completions while typing,
and a typing mistake answered with guidance rather than an error (issue #14)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, GetPromptResult, PromptReference, ResourceTemplateReference
from pydantic import SecretStr

from musicgpt_mcp import completions
from musicgpt_mcp.config import Settings

from .conftest import connect, subprocess_env
from .test_schema import MUSICGPT_STEMS
from .test_stdio import HANDSHAKE, _rpc, run_raw

pytestmark = pytest.mark.anyio

OFFLINE = Settings(api_key=SecretStr("unused"), base_url="http://127.0.0.1:9")
PRACTICE = PromptReference(type="ref/prompt", name="practice_track")
ERAS = ["auto", "legacy"]  # in-process: 2026-07-28, and 2025-11-25 through the initialize handshake


def text(result: GetPromptResult) -> str:
    [message] = result.messages
    return message.content.text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ERAS)
async def test_instrument_completes_from_the_stems_while_typing(mode: str) -> None:
    async with connect(OFFLINE, mode=mode) as client:
        assert client.server_capabilities.completions is not None

        async def values(typed: str, argument: str = "instrument") -> list[str]:
            return (await client.complete(PRACTICE, {"name": argument, "value": typed})).completion.values

        # Names starting with what was typed first, then names containing it.
        assert await values("dr") == ["drums", "kick_drum", "snare_drum"]
        assert await values("gui") == ["guitar", "rhythm_guitar", "solo_guitar", "acoustic_guitar", "electric_guitar"]
        assert await values("Hi h") == ["hi_hat"]
        assert await values("kazoo") == []
        everything = await client.complete(PRACTICE, {"name": "instrument", "value": ""})
        assert everything.completion.values == MUSICGPT_STEMS
        assert everything.completion.total == len(MUSICGPT_STEMS)
        assert everything.completion.has_more is False
        # The song is anything the user names: no suggestions.
        assert await values("/home/", argument="audio") == []
        assert (
            await client.complete(
                PromptReference(type="ref/prompt", name="karaoke_track"), {"name": "audio", "value": "a"}
            )
        ).completion.values == []
        template = ResourceTemplateReference(type="ref/resource", uri="musicgpt://extractions/{task_id}")
        assert (await client.complete(template, {"name": "task_id", "value": "a"})).completion.values == []


@pytest.mark.parametrize("mode", ERAS)
async def test_completion_for_a_prompt_or_argument_that_does_not_exist_is_invalid_params(mode: str) -> None:
    async with connect(OFFLINE, mode=mode) as client:
        with pytest.raises(MCPError) as no_prompt:
            await client.complete(PromptReference(type="ref/prompt", name="nope"), {"name": "x", "value": ""})
        with pytest.raises(MCPError) as no_argument:
            await client.complete(PRACTICE, {"name": "tempo", "value": ""})
    assert no_prompt.value.code == INVALID_PARAMS and "nope" in no_prompt.value.message
    assert no_argument.value.code == INVALID_PARAMS and "tempo" in no_argument.value.message


async def test_completions_stay_within_the_spec_limit_of_100() -> None:
    server: MCPServer[Any] = MCPServer("many")

    @server.prompt()
    def pick(choice: str) -> str:
        return choice

    many = [f"value_{i:03d}" for i in range(150)]
    completions.register(server, {"pick": {"choice": many}})
    async with Client(server) as client:
        answer = (
            await client.complete(PromptReference(type="ref/prompt", name="pick"), {"name": "choice", "value": "v"})
        ).completion
    assert answer.values == many[:100]
    assert answer.total == 150
    assert answer.has_more is True


async def test_instrument_argument_names_its_values_for_hosts_without_completion() -> None:
    async with connect(OFFLINE) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    arguments = {a.name: a for a in prompts["practice_track"].arguments or ()}
    assert arguments["audio"].required is True
    assert arguments["instrument"].required is False
    description = arguments["instrument"].description or ""
    assert all(stem in description for stem in MUSICGPT_STEMS)


@pytest.mark.parametrize("mode", ERAS)
async def test_an_unknown_instrument_renders_a_prompt_that_asks_the_user(mode: str) -> None:
    async with connect(OFFLINE, mode=mode) as client:
        kazoo = text(await client.get_prompt("practice_track", {"audio": "~/song.mp3", "instrument": "kazoo"}))
        drum = text(await client.get_prompt("practice_track", {"audio": "~/song.mp3", "instrument": "drum"}))
    assert '"kazoo" is not an instrument this server knows' in kazoo
    assert "instrument argument" in kazoo
    assert all(stem in kazoo for stem in MUSICGPT_STEMS)
    assert "Before calling any tool, ask the user which of these instruments they meant" in kazoo
    assert "closest" not in kazoo  # nothing looks like a kazoo
    assert "kazoo'" not in kazoo and "stems=['" not in kazoo  # no call with the wrong value is suggested
    assert "audio_file='~/song.mp3'" in kazoo  # the song is kept for when the user has answered
    assert "The closest it knows: drums, kick_drum, snare_drum." in drum


async def test_instrument_forgives_case_spaces_and_hyphens_and_blank_means_the_default() -> None:
    async with connect(OFFLINE) as client:
        hi_hat = text(await client.get_prompt("practice_track", {"audio": "https://a.b/s.mp3", "instrument": "Hi-Hat"}))
        blank = text(await client.get_prompt("practice_track", {"audio": "/s.mp3", "instrument": " "}))
        drums = text(await client.get_prompt("practice_track", {"audio": "/s.mp3", "instrument": "drums"}))
    assert "audio_url='https://a.b/s.mp3' and stems=['hi_hat', 'vocals', 'drums'," in hi_hat
    assert "stems=['guitar', 'vocals', 'drums', 'bass', 'piano', 'keys', 'strings', 'winds']" in blank
    assert "stems=['drums', 'vocals', 'bass', 'guitar', 'piano', 'keys', 'strings', 'winds']" in drums
    assert "format='wav'" in drums


@pytest.mark.parametrize("mode", ERAS)
async def test_a_missing_or_blank_song_renders_a_prompt_that_asks_for_it(mode: str) -> None:
    async with connect(OFFLINE, mode=mode) as client:
        missing = text(await client.get_prompt("karaoke_track", {}))
        blank = text(await client.get_prompt("drum_stems", {"audio": "  "}))
    for rendered in (missing, blank):
        assert "The user has not said which song yet: ask them for it" in rendered
        assert "audio_file=''" not in rendered


def test_typing_mistakes_over_stdio_get_answers_and_no_traceback() -> None:
    """The issue's report, on the raw wire: bad prompt arguments answered as results, nothing on stderr
    but log lines (before: JSON-RPC error code 0 and a traceback per request)."""
    requests = b"".join(
        [
            *HANDSHAKE,
            _rpc(3, "prompts/get", {"name": "practice_track", "arguments": {"audio": "/a.mp3", "instrument": "kazoo"}}),
            _rpc(4, "prompts/get", {"name": "practice_track", "arguments": {"instrument": "drums"}}),
            _rpc(5, "prompts/get", {"name": "practice_track", "arguments": {"audio": "", "instrument": "dr"}}),
            _rpc(
                6,
                "completion/complete",
                {
                    "ref": {"type": "ref/prompt", "name": "practice_track"},
                    "argument": {"name": "instrument", "value": "dr"},
                },
            ),
            _rpc(
                7,
                "completion/complete",
                {"ref": {"type": "ref/prompt", "name": "nope"}, "argument": {"name": "instrument", "value": "dr"}},
            ),
        ]
    )
    messages, stderr, _ = run_raw(requests, subprocess_env(MUSICGPT_API_KEY="unused"), {1, 2, 3, 4, 5, 6, 7})
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert by_id[1]["result"]["capabilities"]["completions"] == {}
    for id_ in (3, 4, 5):
        assert "result" in by_id[id_], by_id[id_]
    assert '"kazoo" is not an instrument' in by_id[3]["result"]["messages"][0]["content"]["text"]
    assert "ask them for it" in by_id[4]["result"]["messages"][0]["content"]["text"]
    assert '"dr" is not an instrument' in by_id[5]["result"]["messages"][0]["content"]["text"]
    assert by_id[6]["result"]["completion"]["values"] == ["drums", "kick_drum", "snare_drum"]
    assert by_id[7]["error"]["code"] == INVALID_PARAMS
    assert "Traceback" not in stderr, stderr
    assert "Error rendering" not in stderr, stderr
