"""A MusicGPT API key inside text: how it is taken out of everything the server says or logs.

Replacing every occurrence of the key is right for a real key, which is long and random: anywhere it appears,
it is the key. It is wrong for a short one. With the key `k` in header mode, `task_id` became `tas[redacted]_id`
in a result, which then failed its output schema, and the caller got a bare "Error executing tool". So a key
of at least SUBSTRING_MATCH characters is taken out wherever it appears; a shorter one only where it stands
alone (not inside a longer run of letters, digits, '-' or '_'), which is where a key echoed back would be.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

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
