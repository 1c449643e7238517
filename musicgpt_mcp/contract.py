"""MusicGPT's wire contract as far as it is known: paths, field names, reply shapes.

Both the client and the sandbox import from here, so they cannot drift apart. Items marked
[guess] in ../shared/musicgpt-api.md live in this module only, so each is one edit to change.
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

# Replies are small JSON documents; anything bigger is not MusicGPT talking.
MAX_REPLY_BYTES: Final = 1024 * 1024


def error_reply(message: str) -> dict[str, Any]:
    """[docs] The error body shape."""
    return {"success": False, "error": message}


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """The reply as a JSON object, or None when it is empty, HTML, or not a JSON object."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
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


_WHITESPACE = re.compile(r"\s+")


def error_message(reply: dict[str, Any] | None) -> str | None:
    """MusicGPT's own words from an error reply.

    [docs] `error`; [guess] `message` or `detail` instead. The text comes from the network, so it
    is flattened to one line and bounded before a model reads it.
    """
    if reply is None:
        return None
    for key in ("error", "message", "detail"):
        value = reply.get(key)
        if isinstance(value, str) and value.strip():
            text = _WHITESPACE.sub(" ", value).strip()
            return text if len(text) <= 300 else text[:297] + "..."
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
    if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > 200:
        return None
    conversion_id = reply.get("conversion_id")
    eta = reply.get("eta")
    credit = reply.get("credit_estimate")
    message = reply.get("message")
    return SubmitReply(
        task_id=task_id.strip(),
        conversion_id=conversion_id if isinstance(conversion_id, str) and conversion_id else None,
        eta=_as_eta(eta),
        credit_estimate=_as_float(credit),
        message=message if isinstance(message, str) else None,
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
