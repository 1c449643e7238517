"""MusicGPT's wire contract as far as it is known: paths, field names, reply shapes.

Both the client and the sandbox import from here, so they cannot drift apart. Items marked
[guess] in docs/musicgpt-api.md live in this module only, so each is one edit to change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

EXTRACTION_PATH: Final = "/v1/Extraction"
STATUS_PATH: Final = "/v1/byId"

# [docs] The raw key, no "Bearer".
AUTH_HEADER: Final = "Authorization"
# [guess] The shortest a MusicGPT API key can be. The docs show no key; the dashboard's are long random
# strings. A caller's key shorter than this (header mode) is refused: "test" is a first try, not a key.
MIN_KEY_LENGTH: Final = 16

# [docs] Multipart field names of POST /v1/Extraction.
FIELD_AUDIO_URL: Final = "audio_url"
FIELD_AUDIO_FILE: Final = "audio_file"
FIELD_STEMS: Final = "stems"
FIELD_PREPROCESSING: Final = "preprocessing_options"
FIELD_WEBHOOK_URL: Final = "webhook_url"

# [docs] The 422 text when neither input is given.
MISSING_INPUT_MESSAGE: Final = "Either audio_url or audio_file must be provided."
# [guess] The text when both are given; the docs only say exactly one is needed.
BOTH_INPUTS_MESSAGE: Final = "Provide either audio_url or audio_file, not both."
# [docs] Rate limits, quoted in error texts.
SUBMITS_PER_MINUTE: Final = 60
STATUS_CALLS_PER_MINUTE: Final = 200
# The window both limits are counted in, in seconds.
RATE_WINDOW: Final = 60.0

# [guess] What a job is assumed to cost until MusicGPT states it, for the daily credit limit: MusicGPT
# publishes no price list, and its documented example is 2.5 credits for two stems with one clean-up
# option. These figures are above that on purpose (a limit must err on the side of refusing), and they
# count only until the job's own figure is known: the last cost seen for the same stems and options,
# MusicGPT's estimate in its reply, then its stated cost.
ASSUMED_CREDITS_PER_STEM: Final = 1.5
ASSUMED_CREDITS_PER_OPTION: Final = 0.5


def assumed_credits(stems: int, options: int) -> float:
    return ASSUMED_CREDITS_PER_STEM * stems + ASSUMED_CREDITS_PER_OPTION * options


# Replies are small JSON documents; anything bigger is not MusicGPT talking.
MAX_REPLY_BYTES: Final = 1024 * 1024
# What a task ID may look like (MusicGPT's are UUIDs). A reply's task_id must match it too, so
# every ID we hand the model is one the status tools accept.
TASK_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,200}$"
# Bounds on what a stem map may hold before we show it to a model.
MAX_STEM_URL: Final = 2048
MAX_STEM_ENTRIES: Final = 64
# Every string taken from a reply passes through `reply_text` with one of these limits: IDs and
# names, a status word, and MusicGPT's own sentences. A reply once carried a 368,000-character
# conversion_id full of newlines; a model reads these, so they stay short and on one line.
ID_CHARS: Final = 200
STATUS_CHARS: Final = 40
MESSAGE_CHARS: Final = 300


def error_reply(message: str) -> dict[str, Any]:
    """[docs] The error body shape."""
    return {"success": False, "error": message}


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """The reply as a JSON object, or None when it is empty, HTML, or not a JSON object.

    Any failure means "not parseable", whatever its kind: 200,000 nested brackets fit in a reply
    and make json raise RecursionError, which must not escape as a crash.
    """
    try:
        value = json.loads(body)
    except Exception:
        return None
    return value if isinstance(value, dict) else None


def describe_non_json(body: bytes) -> str:
    """A short, safe description of a body that is not a JSON object, for an error text."""
    stripped = body.strip()
    if not stripped:
        return "an empty body"
    if stripped[:1] == b"<":
        return "an HTML page"
    return "a body that is not JSON"


# Runs of whitespace, control characters and invisible formatting (zero-width, bidirectional
# overrides) become one space: text from the network must not hide or reorder what a model reads.
_UNSEEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+")


def reply_text(value: object, limit: int) -> str | None:
    """A string from a reply, made safe to show: one line, at most `limit` characters; None when
    `value` is not a string or holds nothing visible. The one helper every path uses."""
    if not isinstance(value, str):
        return None
    flat = _UNSEEN.sub(" ", value[: limit * 4 + 64]).strip()
    if not flat:
        return None
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def error_message(reply: dict[str, Any] | None) -> str | None:
    """MusicGPT's own words from an error reply.

    [docs] `error`; [guess] `message` or `detail` instead. The text comes from the network, so it
    is flattened to one line and bounded before a model reads it.
    """
    if reply is None:
        return None
    for key in ("error", "message", "detail"):
        value = reply.get(key)
        text = reply_text(value, MESSAGE_CHARS)
        if text:
            return text
    return None


@dataclass(frozen=True)
class SubmitReply:
    task_id: str
    conversion_id: str | None
    eta: int
    credit_estimate: float | None
    message: str | None


def parse_submit_reply(reply: dict[str, Any]) -> SubmitReply | None:
    """[docs] The 200 reply of POST /v1/Extraction; None when it carries no usable task_id."""
    task_id = reply.get("task_id")
    if not isinstance(task_id, str) or not re.fullmatch(TASK_ID_PATTERN, task_id.strip()):
        return None
    return SubmitReply(
        task_id=task_id.strip(),
        conversion_id=reply_text(reply.get("conversion_id"), ID_CHARS),
        eta=_as_eta(reply.get("eta")),
        credit_estimate=_as_float(reply.get("credit_estimate")),
        message=reply_text(reply.get("message"), MESSAGE_CHARS),
    )


def _as_eta(value: object) -> int:
    number = _as_float(value)
    if number is None or number < 0:
        return -1
    return round(number)


def _as_float(value: object) -> float | None:
    # [seen] numbers sometimes arrive as strings.
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if result == result and abs(result) != float("inf") else None


# --- status: GET /v1/byId ----------------------------------------------------------------------

CONVERSION_TYPE: Final = "EXTRACTION"
# [docs][sdk] Terminal statuses; FAILED and ERROR mean no stems.
SUCCESS_STATUSES: Final = frozenset({"COMPLETED"})
FAILURE_STATUSES: Final = frozenset({"FAILED", "ERROR"})
QUEUED_STATUSES: Final = frozenset({"IN_QUEUE"})
# [seen] Where the stem maps live; the first key of each pair that holds a map wins.
MP3_MAP_KEYS: Final = ("conversion_path", "audio_url")
WAV_MAP_KEYS: Final = ("conversion_path_wav", "audio_url_wav")
# [guess] MusicGPT's words for an unknown task.
NOT_FOUND_MESSAGE: Final = "Conversion not found"


@dataclass(frozen=True)
class StatusReply:
    task_id: str | None
    conversion_id: str | None
    status: str
    status_message: str | None
    conversion_cost: float | None
    mp3: dict[str, str]
    wav: dict[str, str]

    @property
    def done(self) -> bool:
        return self.status in SUCCESS_STATUSES or self.status in FAILURE_STATUSES

    @property
    def failed(self) -> bool:
        return self.status in FAILURE_STATUSES


def parse_status_reply(reply: dict[str, Any]) -> StatusReply | None:
    """[docs] `{"success": true, "conversion": {...}}`; None when there is no conversion object."""
    conversion = reply.get("conversion")
    if not isinstance(conversion, dict):
        return None
    status = reply_text(conversion.get("status"), STATUS_CHARS)
    message = conversion.get("status_msg") or conversion.get("message") or reply.get("message")
    return StatusReply(
        task_id=reply_text(conversion.get("task_id"), ID_CHARS),
        conversion_id=reply_text(conversion.get("conversion_id"), ID_CHARS),
        status=status.upper() if status else "UNKNOWN",
        status_message=reply_text(message, MESSAGE_CHARS),
        conversion_cost=_as_float(conversion.get("conversion_cost")),
        mp3=_first_map(conversion, MP3_MAP_KEYS),
        wav=_first_map(conversion, WAV_MAP_KEYS),
    )


def _first_map(conversion: dict[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    for key in keys:
        found = parse_stem_map(conversion.get(key))
        if found:
            return found
    return {}


def parse_stem_map(value: object) -> dict[str, str]:
    """A stem-name -> URL map from any shape MusicGPT is known to send.

    [seen] A JSON object serialised into a string, sometimes with a storage URL glued in front
    (parse from the first "{"); a real JSON object; or a plain URL, whose file name then names the
    stem. Keys and values are returned as given (untrusted): callers check them against the catalog
    and allow only http(s) URLs.
    """
    if isinstance(value, dict):
        entries = [(str(k), v) for k, v in value.items() if isinstance(v, str) and 0 < len(v) <= MAX_STEM_URL]
        return dict(entries[:MAX_STEM_ENTRIES])
    if not isinstance(value, str) or not value.strip():
        return {}
    text = value.strip()
    brace = text.find("{")
    if brace >= 0:
        try:
            parsed = json.loads(text[brace:])
        except Exception:  # RecursionError too: a map nested 200,000 deep is no map
            parsed = None
        if isinstance(parsed, dict):
            return parse_stem_map(parsed)
        return {}
    # A single URL: its file name (vocals.mp3) is the only hint of which stem it holds.
    if len(text) > MAX_STEM_URL:
        return {}
    name = text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    return {stem: text} if stem else {}


def encode_stem_map(urls: dict[str, str], shape: str, prefix: str) -> object:
    """The sandbox's side of `parse_stem_map`: a map as MusicGPT would send it."""
    if shape == "object":
        return dict(urls)
    if shape == "json-string":
        return json.dumps(urls)
    if shape == "plain-url":
        return next(iter(urls.values()), "")
    return prefix + json.dumps(urls)  # "prefixed-string", as the live API is reported to send
