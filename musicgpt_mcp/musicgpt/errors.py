"""What goes wrong talking to MusicGPT, as Failures: the errors this package raises, and which error a refused
submit's HTTP status is (one place, as anthropic-sdk-python maps its statuses).

Every text is written for a person, and through the model for the user: what happened and what to do next, and
never the key (MusicGPT's own words reach here already redacted). What a failure did to money is `outcome`, not
prose: "maybe_charged" when the paid request may have reached MusicGPT and created a job, "not_charged" when
nothing left the machine or MusicGPT refused the job. Reads leave it at "not_charged".
"""

from __future__ import annotations

from ..failures import Failure
from .contract import SUBMITS_PER_MINUTE

CHECK_BEFORE_RETRY = (
    "Check the extractions in your MusicGPT dashboard before submitting again, so you are not charged twice."
)


class MusicGPTError(Failure):
    """A failure talking to MusicGPT, explained for a person; never holds the key. `outcome` tells a submit's
    caller whether money may have moved (see the module)."""


class TaskNotFoundError(MusicGPTError):
    def __init__(self, task_id: str) -> None:
        # Also what a caller of a shared server reads for someone else's job: the same words, so the
        # answer does not tell whether the job exists.
        super().__init__(
            f"MusicGPT has no extraction with task_id {task_id!r} (HTTP 404). Use the task_id exactly as "
            "extract_stems returned it."
        )


class DownloadError(MusicGPTError):
    """A stem that could not be fetched from storage; the text is the reason, in lower case (it follows the
    stem's name in what the model reads)."""


class MissingAPIKeyError(MusicGPTError):
    def __init__(self) -> None:
        super().__init__(
            "No MusicGPT API key is configured, so nothing was sent. Create a key in the MusicGPT API "
            "dashboard and set it as MUSICGPT_API_KEY in this server's environment (in your MCP host's "
            'config: "env": {"MUSICGPT_API_KEY": "<your key>"}), then restart the server. '
            "To try the tools without a key, run the server with --sandbox."
        )


def submit_refused(status: int, said: str | None, detail: str, wait: int | None) -> MusicGPTError:
    """The error for a submit MusicGPT answered with a non-2xx `status`. `said` is MusicGPT's own reason
    (redacted), `detail` the same ready to append (or a description of the body), `wait` its Retry-After."""
    if status == 401:
        return MusicGPTError(
            f"MusicGPT rejected the API key (HTTP 401{detail}). Nothing was charged. Check MUSICGPT_API_KEY "
            "in this server's environment: it must be the key from the MusicGPT API dashboard, pasted "
            "as is, without a 'Bearer' prefix. Restart the server after changing it."
        )
    if status == 403:
        return MusicGPTError(
            f"MusicGPT refused the request (HTTP 403{detail}): the API key lacks permission for this. "
            "Nothing was charged. Check the key's permissions in the MusicGPT API dashboard, or use "
            "another key in MUSICGPT_API_KEY."
        )
    if status == 402:
        return MusicGPTError(
            f"MusicGPT says the account does not have enough credits (HTTP 402{detail}). Nothing was "
            "charged. Add credits in the MusicGPT dashboard, then submit again."
        )
    if status == 429:
        when = f"Wait {wait} second{'' if wait == 1 else 's'}" if wait is not None else "Wait a minute"
        return MusicGPTError(
            f"MusicGPT's rate limit was reached (HTTP 429{detail}; it allows {SUBMITS_PER_MINUTE} extraction "
            f"submits a minute). The job was not accepted. {when} before submitting again."
        )
    if 400 <= status < 500:
        return MusicGPTError(
            f"MusicGPT rejected the request (HTTP {status}): {sentence(said or 'no reason given')} Nothing was "
            "charged. Fix the arguments and submit again."
        )
    if status >= 500:
        return MusicGPTError(
            f"MusicGPT had a server error (HTTP {status}{detail}). The job was probably not created, but "
            f"MusicGPT did not confirm it. {CHECK_BEFORE_RETRY} If none is there, try again in a minute.",
            outcome="maybe_charged",
        )
    return MusicGPTError(
        f"MusicGPT answered with an unexpected HTTP {status}{detail}. The extraction may or may not have "
        f"been submitted. {CHECK_BEFORE_RETRY}",
        outcome="maybe_charged",
    )


def sentence(text: str) -> str:
    """`text` ending like a sentence, so the next one can follow it."""
    return text if text.endswith((".", "!", "?")) else text + "."


__all__ = [
    "CHECK_BEFORE_RETRY",
    "DownloadError",
    "MissingAPIKeyError",
    "MusicGPTError",
    "TaskNotFoundError",
    "sentence",
    "submit_refused",
]
