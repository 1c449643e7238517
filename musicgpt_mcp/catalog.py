"""The stems and preprocessing options MusicGPT's Extraction API accepts, spelled as MusicGPT spells them.

Everything else (tool schemas, validation, the sandbox, the `musicgpt://stems` resource, the README)
derives from this module; nothing retypes the lists.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Stem = Literal[
    "vocals",
    "instrumental",
    "male_vocal",
    "female_vocal",
    "lead_vocal",
    "back_vocal",
    "bass",
    "drums",
    "guitar",
    "piano",
    "keys",
    "strings",
    "winds",
    "rhythm_guitar",
    "solo_guitar",
    "acoustic_guitar",
    "electric_guitar",
    "kick_drum",
    "snare_drum",
    "toms",
    "hi_hat",
    "ride",
    "crash",
]

Preprocessing = Literal["Denoise", "Deecho", "Dereverb"]

STEM_DESCRIPTIONS: Final[dict[Stem, str]] = {
    "vocals": "All vocals, lead and backing together.",
    "instrumental": "Everything except the vocals (a karaoke or instrumental track).",
    "male_vocal": "Male voices only.",
    "female_vocal": "Female voices only.",
    "lead_vocal": "The lead singer only.",
    "back_vocal": "Backing vocals only.",
    "bass": "Bassline instruments (bass guitar, synth bass).",
    "drums": "All drum elements together.",
    "guitar": "All guitars together.",
    "piano": "Piano only.",
    "keys": "Keyboards, including synths and organs.",
    "strings": "String instruments such as violin and cello.",
    "winds": "Wind instruments such as saxophone and flute.",
    "rhythm_guitar": "Rhythm guitar only.",
    "solo_guitar": "Solo (lead) guitar only.",
    "acoustic_guitar": "Acoustic guitar only.",
    "electric_guitar": "Electric guitar only.",
    "kick_drum": "Kick drum only.",
    "snare_drum": "Snare drum only.",
    "toms": "Toms only.",
    "hi_hat": "Hi-hat only.",
    "ride": "Ride cymbal only.",
    "crash": "Crash cymbal only.",
}

PREPROCESSING_DESCRIPTIONS: Final[dict[Preprocessing, str]] = {
    "Denoise": "Removes background noise before separation.",
    "Deecho": "Removes echo before separation.",
    "Dereverb": "Removes reverb before separation.",
}

STEMS: Final[tuple[Stem, ...]] = get_args(Stem)
PREPROCESSING_OPTIONS: Final[tuple[Preprocessing, ...]] = get_args(Preprocessing)

# What MusicGPT separates when `stems` is omitted or empty.
DEFAULT_STEMS: Final[tuple[Stem, ...]] = ("drums", "bass", "piano", "guitar")

if set(STEM_DESCRIPTIONS) != set(STEMS) or set(PREPROCESSING_DESCRIPTIONS) != set(PREPROCESSING_OPTIONS):
    raise RuntimeError("catalog descriptions are out of step with the Stem/Preprocessing literals")


def catalog_json() -> dict[str, object]:
    """The catalog as served by the `musicgpt://stems` resource."""
    return {
        "stems": [{"name": name, "description": STEM_DESCRIPTIONS[name]} for name in STEMS],
        "default_stems": list(DEFAULT_STEMS),
        "preprocessing_options": [
            {"name": name, "description": PREPROCESSING_DESCRIPTIONS[name]} for name in PREPROCESSING_OPTIONS
        ],
    }
