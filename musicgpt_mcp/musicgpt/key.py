"""The MusicGPT API key: the header it travels in, why a key cannot be sent, and how it is taken out of everything
the server says or logs.

Replacing every occurrence of the key is right for a real key, which is long and random: anywhere it appears,
it is the key. It is wrong for a short one. With the key `k` in header mode, `task_id` became `tas[redacted]_id`
in a result, which then failed its output schema, and the caller got a bare "Error executing tool". So a key
of at least SUBSTRING_MATCH characters is taken out wherever it appears; a shorter one only where it stands
alone (not inside a longer run of letters, digits, '-' or '_'), which is where a key echoed back would be.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from .contract import AUTH_HEADER, StatusReply, SubmitReply
from .errors import MissingAPIKeyError, MusicGPTError

if TYPE_CHECKING:
    from pydantic import SecretStr

# A key this long is never part of ordinary text by chance.
SUBSTRING_MATCH: Final = 16
REPLACEMENT: Final = "[redacted]"


@lru_cache(maxsize=256)
def _alone(key: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9_\-])" + re.escape(key) + r"(?![A-Za-z0-9_\-])")


def scrub(text: str, key: str | None) -> str:
    """`text` without `key` (see the module's docstring for where a key counts as present)."""
    if not key or key not in text:
        return text
    if len(key) >= SUBSTRING_MATCH:
        return text.replace(key, REPLACEMENT)
    return _alone(key).sub(REPLACEMENT, text)


def key_problem(key: str) -> str | None:
    """Why `key` cannot be sent in an HTTP header, in words that never echo it; None when it can."""
    if all(0x21 <= ord(ch) <= 0x7E for ch in key):
        return None
    return (
        "MUSICGPT_API_KEY contains a character that cannot be sent (a space, a non-ASCII character such as a "
        "non-breaking space, or a control character), which usually comes from copying it out of a web page. "
        "Paste the key again, exactly as the MusicGPT dashboard shows it, and restart the server."
    )


class APIKey:
    """One client's key, or none: the header a request to MusicGPT's API carries, and redaction of what comes
    back. Storage is never sent the key (a key sent there could end up in a third party's logs)."""

    def __init__(self, secret: SecretStr | None) -> None:
        self._secret = secret

    @property
    def present(self) -> bool:
        return self._secret is not None

    def headers(self) -> dict[str, str]:
        """The auth header, or the error that explains why nothing can be sent."""
        if self._secret is None:
            raise MissingAPIKeyError()
        key = self._secret.get_secret_value()
        problem = key_problem(key)
        if problem:
            # Sending it would fail deep in the HTTP stack with an encoding error, on every call.
            raise MusicGPTError(f"{problem} Nothing was sent.")
        return {AUTH_HEADER: key}

    def redact(self, text: str) -> str:
        """Belt and braces: never let the key through, even if a server echoes it back."""
        return scrub(text, self._secret.get_secret_value()) if self._secret is not None else text

    def redact_optional(self, text: str | None) -> str | None:
        return None if text is None else self.redact(text)

    def scrub_submit(self, reply: SubmitReply | None) -> SubmitReply | None:
        """The reply without the key in any string; a task_id that is the key is no task_id."""
        if reply is None or self.redact(reply.task_id) != reply.task_id:
            return None
        return dataclasses.replace(
            reply,
            conversion_id=self.redact_optional(reply.conversion_id),
            message=self.redact_optional(reply.message),
        )

    def scrub_status(self, reply: StatusReply) -> StatusReply:
        return dataclasses.replace(
            reply,
            task_id=self.redact_optional(reply.task_id),
            conversion_id=self.redact_optional(reply.conversion_id),
            status=self.redact(reply.status),
            status_message=self.redact_optional(reply.status_message),
            mp3={self.redact(k): self.redact(v) for k, v in reply.mp3.items()},
            wav={self.redact(k): self.redact(v) for k, v in reply.wav.items()},
        )


__all__ = ["REPLACEMENT", "SUBSTRING_MATCH", "APIKey", "key_problem", "scrub"]
