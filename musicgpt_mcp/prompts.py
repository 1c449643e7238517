"""Prompts for common jobs; each walks the model through extract -> wait -> download."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from .catalog import Stem

Audio = Annotated[str, Field(description="The song: an absolute local path (or ~/...) or an http(s) URL.")]

# The stems that together make up a whole mix, for "everything but one instrument".
_MAIN_PARTS: tuple[Stem, ...] = ("vocals", "drums", "bass", "guitar", "piano", "keys", "strings", "winds")


def _source_args(audio: str) -> str:
    key = "audio_url" if audio.strip().lower().startswith(("http://", "https://")) else "audio_file"
    return f"{key}={audio.strip()!r}"


def _flow(audio: str, stems: list[Stem], fmt: str, goal: str) -> str:
    return (
        f"{goal}\n\n"
        f"1. Call extract_stems with {_source_args(audio)} and stems={stems!r}. This spends MusicGPT "
        "credits: tell the user the credit_estimate it returns.\n"
        "2. Call get_extraction with the task_id and wait_seconds=50; repeat while done is false, telling the "
        "user how it is going. If the job failed, tell the user MusicGPT's reason and stop.\n"
        f"3. Call download_stems with the task_id and format={fmt!r}.\n"
        "4. Tell the user where each file is saved."
    )


def register(server: MCPServer[Any]) -> None:
    @server.prompt(
        name="karaoke_track",
        title="Make a karaoke (instrumental) track",
        description="Remove the vocals from a song, keeping everything else, plus the vocals on their own.",
    )
    def karaoke_track(audio: Audio) -> str:
        return _flow(
            audio,
            ["instrumental", "vocals"],
            "mp3",
            "Make a karaoke version of this song: the instrumental (everything but the vocals), and the "
            "vocals on their own as a guide track.",
        )

    @server.prompt(
        name="practice_track",
        title="Make a practice track without one instrument",
        description="Separate a song so a musician can play along with one instrument removed.",
    )
    def practice_track(
        audio: Audio,
        instrument: Annotated[
            Stem, Field(description="The instrument the musician will play, e.g. guitar, bass, drums, piano.")
        ] = "guitar",
    ) -> str:
        others = [stem for stem in _MAIN_PARTS if stem != instrument]
        return _flow(
            audio,
            [instrument, *others],
            "wav",
            f"Make a practice track for a {instrument} player. MusicGPT "
            f"returns separate stems: the {instrument} stem is the part to learn from, and the other stems "
            f"({', '.join(others)}) played together are the song without the {instrument}, to play along with. "
            "Explain that to the user, and suggest loading the other stems together in any audio editor or DAW.",
        )

    @server.prompt(
        name="drum_stems",
        title="Split the drums for sampling",
        description="Separate every drum element (kick, snare, toms, hi-hat, ride, crash) as lossless WAV.",
    )
    def drum_stems(audio: Audio) -> str:
        return _flow(
            audio,
            ["drums", "kick_drum", "snare_drum", "toms", "hi_hat", "ride", "crash"],
            "wav",
            "Split the drums of this song into separate elements for sampling, as lossless WAV files.",
        )
