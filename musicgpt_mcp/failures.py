"""The one error vocabulary: every failure this server explains is a `Failure`.

Its text (`str(failure)`) is written for a person, and through the model for the user: what happened and what to
do next, never a key. What it did to money is data, not prose to parse: `outcome` says whether a paid submit may
have been charged, and `consequence` is the sentence a reader needs about what was (not) done when the message
does not say it already ("Nothing was submitted."). Code below the MCP surface raises these; the surface turns
them into tool or resource errors in one place (errors.py), the only place that knows the SDK's error types.
"""

from __future__ import annotations

from typing import ClassVar, Literal

# not_charged: nothing left the machine, or MusicGPT refused the job. maybe_charged: the paid request may have
# reached MusicGPT and created a job, and no reply says whether it did. charged: MusicGPT accepted a paid job.
Outcome = Literal["not_charged", "maybe_charged", "charged"]


class Failure(Exception):
    """A failure explained for a person, with what it did to money (`outcome`) as data."""

    outcome: Outcome = "not_charged"
    # Said after the message by `explained()`, unless the message says it itself.
    consequence: ClassVar[str] = ""

    def __init__(self, message: str, *, outcome: Outcome | None = None) -> None:
        super().__init__(message)
        if outcome is not None:
            self.outcome = outcome

    def explained(self) -> str:
        """The whole text a person reads: the message, then the consequence."""
        text = str(self)
        if self.consequence and self.consequence not in text:
            text = f"{text} {self.consequence}"
        return text


__all__ = ["Failure", "Outcome"]
