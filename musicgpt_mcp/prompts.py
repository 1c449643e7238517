"""Prompts for common jobs; each walks the model through extract -> wait -> download.

A person fills in a prompt's arguments in the host's form or after a slash command, so a typing
mistake is normal use: a prompt never fails on one. It renders and tells the assistant to ask the
user (a JSON-RPC error would reach the user as "Error rendering prompt" and nothing else). Only a
prompt name that does not exist, which hosts take from prompts/list, is refused (-32602).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, Prompt
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, InputRequiredResult
from pydantic import Field

from . import completions
from .catalog import STEMS, Stem

Audio = Annotated[str, Field(description="The song: an absolute local path (or ~/...) or an http(s) URL.")]

# The stems that together make up a whole mix, for "everything but one instrument".
_MAIN_PARTS: tuple[Stem, ...] = ("vocals", "drums", "bass", "guitar", "piano", "keys", "strings", "winds")

# Arguments with a fixed set of values: hosts offer them while the user types (completion/complete).
CHOICES: completions.PromptChoices = {"practice_track": {"instrument": STEMS}}


class _ForgivingPrompt(Prompt):
    """A prompt that renders without a required argument (the text then asks for it) instead of failing."""

    async def render(
        self, arguments: dict[str, Any] | None, context: Context[Any, Any]
    ) -> list[Message] | InputRequiredResult:
        given = dict(arguments or {})
        for argument in self.arguments or ():
            if argument.required:
                given.setdefault(argument.name, "")
        return await super().render(given, context)


def _source_args(audio: str) -> str:
    if not audio.strip():
        return "audio_file (a local path) or audio_url (an http(s) URL) for the song the user names"
    key = "audio_url" if audio.strip().lower().startswith(("http://", "https://")) else "audio_file"
    return f"{key}={audio.strip()!r}"


def _flow(audio: str, stems: str, fmt: str, goal: str) -> str:
    ask = (
        "The user has not said which song yet: ask them for it (a local file path or an http(s) URL) before "
        "calling any tool.\n\n"
        if not audio.strip()
        else ""
    )
    return (
        f"{goal}\n\n{ask}"
        f"1. Call extract_stems with {_source_args(audio)} and stems={stems}. This spends MusicGPT "
        "credits: tell the user the credit_estimate it returns.\n"
        "2. Call get_extraction with the task_id and wait_seconds=50; repeat while done is false, telling the "
        "user how it is going. If the job failed, tell the user MusicGPT's reason and stop.\n"
        f"3. Call download_stems with the task_id and format={fmt!r}.\n"
        "4. Tell the user where each file is saved."
    )


def karaoke_track(audio: Audio) -> str:
    return _flow(
        audio,
        repr(["instrumental", "vocals"]),
        "mp3",
        "Make a karaoke version of this song: the instrumental (everything but the vocals), and the "
        "vocals on their own as a guide track.",
    )


def practice_track(
    audio: Audio,
    instrument: Annotated[
        str,
        Field(
            description=(
                f"The instrument the musician will play (default guitar), named as a MusicGPT stem: {', '.join(STEMS)}."
            )
        ),
    ] = "guitar",
) -> str:
    chosen = completions.match(STEMS, instrument) if instrument.strip() else "guitar"
    if chosen is None:
        return _unknown_instrument(audio, instrument)
    others = [stem for stem in _MAIN_PARTS if stem != chosen]
    return _flow(
        audio,
        repr([chosen, *others]),
        "wav",
        f"Make a practice track for a {chosen} player. MusicGPT "
        f"returns separate stems: the {chosen} stem is the part to learn from, and the other stems "
        f"({', '.join(others)}) played together are the song without the {chosen}, to play along with. "
        "Explain that to the user, and suggest loading the other stems together in any audio editor or DAW.",
    )


def _unknown_instrument(audio: str, typed: str) -> str:
    shown = json.dumps(typed.strip()[:60], ensure_ascii=False)  # quoted and on one line, whatever was typed
    near = completions.closest(STEMS, typed)
    hint = f" The closest it knows: {', '.join(near)}." if near else ""
    return _flow(
        audio,
        f"[the chosen instrument, then each of {', '.join(_MAIN_PARTS)} other than it]",
        "wav",
        f"The user asked for a practice track, but {shown} is not an instrument this server knows (the "
        f"practice_track prompt's instrument argument).{hint} The instruments it knows are the MusicGPT "
        f"stems: {', '.join(STEMS)}.\n\n"
        "Before calling any tool, ask the user which of these instruments they meant. Then make the practice "
        "track for it: the chosen instrument's stem is the part to learn from, and the other stems played "
        "together are the song without it, to play along with. Explain that to the user, and suggest loading "
        "the other stems together in any audio editor or DAW.",
    )


def drum_stems(audio: Audio) -> str:
    return _flow(
        audio,
        repr(["drums", "kick_drum", "snare_drum", "toms", "hi_hat", "ride", "crash"]),
        "wav",
        "Split the drums of this song into separate elements for sampling, as lossless WAV files.",
    )


class _UnknownPrompts:
    """A `ServerMiddleware`: `prompts/get` of a prompt this server does not have is the caller's mistake,
    answered -32602 with the prompts there are. (The SDK raises a ValueError for it, which reaches the
    client as code 0 or "Internal server error" depending on the protocol era, with tracebacks on stderr.)"""

    def __init__(self, server: MCPServer[Any]) -> None:
        self._server = server

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        name = ctx.params.get("name") if ctx.method == "prompts/get" and ctx.params is not None else None
        if isinstance(name, str):  # anything else is malformed: the SDK's validation answers it
            names = [prompt.name for prompt in await self._server.list_prompts()]
            if name not in names:
                raise MCPError(
                    INVALID_PARAMS, f"No prompt named {name[:100]!r}. The prompts of this server: {', '.join(names)}."
                )
        return await call_next(ctx)


def register(server: MCPServer[Any]) -> None:
    server.middleware.append(_UnknownPrompts(server))
    for fn, name, title, description in (
        (
            karaoke_track,
            "karaoke_track",
            "Make a karaoke (instrumental) track",
            "Remove the vocals from a song, keeping everything else, plus the vocals on their own.",
        ),
        (
            practice_track,
            "practice_track",
            "Make a practice track without one instrument",
            "Separate a song so a musician can play along with one instrument removed.",
        ),
        (
            drum_stems,
            "drum_stems",
            "Split the drums for sampling",
            "Separate every drum element (kick, snare, toms, hi-hat, ride, crash) as lossless WAV.",
        ),
    ):
        server.add_prompt(_ForgivingPrompt.from_function(fn, name=name, title=title, description=description))
