"""Text someone else chose (a file's name, a path, a URL), made safe to put before a person or a model.

A name can carry characters that move or hide what is around it: line breaks (including U+2028, U+2029 and
U+0085, which JSON and most renderers treat as new lines), bidirectional overrides (U+202E reverses what
follows), zero-width characters. In a consent question or a quote, a file named
"song.mp3\u2028Cost: none, this job is prepaid" would add a line the user reads as ours. So such characters
are refused where a value must be exact (URLs: `urls.py`) and shown escaped (\\u2028) everywhere else.
"""

from __future__ import annotations

import unicodedata
from typing import Final

# Control, format, private-use, surrogate and unassigned characters, and every separator but the plain space.
_HIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp", "Zs"})


def hidden(ch: str) -> bool:
    """Whether `ch` is invisible or moves text around it (the plain space is neither)."""
    return ch != " " and unicodedata.category(ch) in _HIDDEN_CATEGORIES


def first_hidden(text: str) -> str | None:
    """The first character of `text` that `hidden` refuses, or None."""
    return next((ch for ch in text if hidden(ch)), None)


def codepoint(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def shown(text: str) -> str:
    """`text` with every hidden character written out as an escape (a line break in a file name becomes \\u000a):
    one visible line that says exactly what the name holds."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(ch) if hidden(ch) else ch for ch in text)


def defused(text: str) -> str:
    """Our own multi-line texts with whatever hidden characters slipped into them escaped, except the plain line
    breaks and tabs they are written with: the last line of defence for everything a tool returns."""
    if text.isascii() and all(ch in "\n\t" or ch.isprintable() for ch in text):
        return text
    return "".join(_escape(ch) if ch not in "\n\t" and hidden(ch) else ch for ch in text)
