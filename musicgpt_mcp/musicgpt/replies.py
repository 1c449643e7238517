"""What MusicGPT's replies mean: a submit's or a status read's HTTP status and body, turned into the parsed reply
(contract.py's shapes) or the MusicGPTError that explains it. Every string from a reply has the key taken out
before anyone reads it.

A submit's reply is read under the money rule: the request was sent, so whatever goes wrong reading the reply,
the one thing never lost is "it may have been submitted".
"""

from __future__ import annotations

import logging
from typing import Any

from .contract import (
    StatusReply,
    SubmitReply,
    describe_non_json,
    error_message,
    parse_json_object,
    parse_status_reply,
    parse_submit_reply,
)
from .errors import CHECK_BEFORE_RETRY, MusicGPTError, TaskNotFoundError, sentence, submit_refused
from .key import APIKey
from .transport import retry_after_seconds

log = logging.getLogger(__name__)


def submit_outcome(status: int, raw: bytes | None, retry_after: str | None, key: APIKey) -> SubmitReply:
    """The accepted job, or the error saying what happened and whether money may have moved."""
    try:
        return _submit_reply(status, raw, retry_after, key)
    except MusicGPTError:
        raise
    except Exception as exc:
        log.warning("could not interpret MusicGPT's submit reply: %s", type(exc).__name__)
        raise MusicGPTError(
            f"MusicGPT answered HTTP {status}, but its reply could not be read. The extraction may or may not "
            f"have been submitted. {CHECK_BEFORE_RETRY}",
            outcome="maybe_charged",
        ) from None


def _submit_reply(status: int, raw: bytes | None, retry_after: str | None, key: APIKey) -> SubmitReply:
    reply = parse_json_object(raw) if raw is not None else None
    if not 200 <= status < 300:
        raise _refused(status, reply, raw, retry_after, key)
    if raw is None:
        raise MusicGPTError(
            f"MusicGPT answered HTTP {status} with an oversized body, not a submit reply. The "
            f"extraction may or may not have been submitted. {CHECK_BEFORE_RETRY}",
            outcome="maybe_charged",
        )
    if reply is None:
        raise MusicGPTError(
            f"MusicGPT answered HTTP {status} with {describe_non_json(raw)} instead of JSON. "
            f"The extraction may or may not have been submitted. {CHECK_BEFORE_RETRY}",
            outcome="maybe_charged",
        )
    parsed = key.scrub_submit(parse_submit_reply(reply))
    if parsed is None:
        said = error_message(reply)
        detail = f" It said: {sentence(key.redact(said))}" if said else ""
        raise MusicGPTError(
            f"MusicGPT answered HTTP {status} without a task_id.{detail} The extraction may or may "
            f"not have been submitted. {CHECK_BEFORE_RETRY}",
            outcome="maybe_charged",
        )
    log.info("extraction submitted: task_id=%s eta=%s", parsed.task_id, parsed.eta)
    return parsed


def _refused(
    status: int, reply: dict[str, Any] | None, raw: bytes | None, retry_after: str | None, key: APIKey
) -> MusicGPTError:
    said = error_message(reply)
    said = key.redact(said) if said else None
    detail = f": {said}" if said else (f" ({describe_non_json(raw)})" if raw is not None else "")
    return submit_refused(status, said, detail, retry_after_seconds(retry_after))


def status_outcome(task_id: str, status: int, raw: bytes | None, key: APIKey) -> StatusReply:
    """The job's status, or the error that explains why it cannot be read now."""
    try:
        return _status_reply(task_id, status, raw, key)
    except MusicGPTError:
        raise
    except Exception as exc:
        log.warning("could not interpret MusicGPT's status reply: %s", type(exc).__name__)
        raise MusicGPTError(
            f"MusicGPT answered the status request with HTTP {status}, but its reply could not be read. "
            "Try again in a minute."
        ) from None


def _status_reply(task_id: str, status: int, raw: bytes | None, key: APIKey) -> StatusReply:
    reply = parse_json_object(raw) if raw is not None else None
    if status == 404:
        raise TaskNotFoundError(task_id)
    if not 200 <= status < 300:
        said = error_message(reply)
        detail = f": {key.redact(said)}" if said else ""
        if status in (401, 403):
            raise MusicGPTError(
                f"MusicGPT refused the status request (HTTP {status}{detail}). Check MUSICGPT_API_KEY in "
                "this server's environment; it must be the key the job was submitted with."
            )
        raise MusicGPTError(f"MusicGPT's status request failed (HTTP {status}{detail}). Try again in a minute.")
    if raw is None or reply is None:
        what = "an oversized body" if raw is None else describe_non_json(raw)
        raise MusicGPTError(f"MusicGPT answered the status request with {what}. Try again in a minute.")
    parsed = parse_status_reply(reply)
    if parsed is None:
        said = error_message(reply)
        detail = f" It said: {sentence(key.redact(said))}" if said else ""
        raise MusicGPTError(
            f"MusicGPT's status reply for task {task_id!r} had no conversion in it.{detail} Try again in a minute."
        )
    return key.scrub_status(parsed)
