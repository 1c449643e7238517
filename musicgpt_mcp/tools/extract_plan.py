"""What an extract_stems call would do, worked out before anything is paid for: every argument checked, the
audio fingerprinted, and (when the user is to be asked) the ledger's verdict previewed and the question written.

A resolver (the SDK's protocol-neutral way of running code before a tool's body): on 2026-07-28 clients it runs
again on the round that carries the user's answer, so it has no side effect beyond remembering a file's hash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import anyio
from mcp.server.mcpserver import Resolve

from .. import submission, summaries
from ..call import Call
from ..catalog import DEFAULT_STEMS, PREPROCESSING_OPTIONS, STEMS
from ..clients import abilities
from ..errors import tool_errors
from ..failures import Failure
from ..files import check_audio_file
from ..fingerprint import fingerprint_file, fingerprint_url
from ..ledger import Claimed, InFlight, JobRequest, LimitReached, Policy, Reused, Unknown
from ..ledger.base import HOUR
from ..musicgpt import ExtractionRequest, MissingAPIKeyError
from ..musicgpt.multipart import FilePart
from ..urls import check_url, check_webhook_url
from ..visible import shown
from .args import CurrentCall, RootsForAudioFile, allowed, catalog_names


class BadAudio(Failure):
    """The call does not name one song this server may send."""

    consequence = "Nothing was submitted."


@dataclass(frozen=True)
class Plan:
    request: JobRequest
    extraction: ExtractionRequest
    policy: Policy
    submits: bool  # False when the ledger expects to return an identical job instead
    question: str  # what the user is asked before paying ("" when nobody will be)


def will_ask(call: Call) -> bool:
    """Whether the user is asked before a paid job: unless MUSICGPT_MCP_CONFIRM=never, when the client can."""
    return call.settings.confirm != "never" and abilities(call.ctx).can_elicit


@tool_errors
async def _plan(
    call: CurrentCall,
    audio_file: str | None,
    audio_url: str | None,
    stems: list[str],
    preprocessing_options: list[str],
    webhook_url: str | None,
    force_new: bool,
    client_roots: RootsForAudioFile,
) -> Plan:
    chosen = catalog_names("stems", stems, STEMS, "a stem MusicGPT separates")
    options = catalog_names("preprocessing_options", preprocessing_options, PREPROCESSING_OPTIONS, "a clean-up option")
    file_arg, url_arg, hook = _inputs(call, audio_file, audio_url, webhook_url)
    if not call.client.has_key:
        raise MissingAPIKeyError()  # before the user is asked to pay for a job that cannot be sent
    ledger = await call.ledger()
    part: FilePart | None = None
    if file_arg:
        roots = allowed(call, client_roots)
        part = await anyio.to_thread.run_sync(check_audio_file, file_arg, roots, call.settings.max_upload_bytes)
        fingerprint = await fingerprint_file(part, ledger)
    else:
        fingerprint = fingerprint_url(url_arg or "")
    request = JobRequest(
        owner=call.owner,
        account=call.account,
        fingerprint=fingerprint,
        source_kind="file" if part else "url",
        # Shown escaped wherever it appears (the consent question, the model's text, the ledger): a file's name
        # is the one piece of the question nobody checked, and a line break in it would add a line of its own.
        source_name=shown(part.filename) if part else (url_arg or ""),
        stems=tuple(chosen) or DEFAULT_STEMS,
        options=tuple(options),
    )
    policy = Policy(
        reuse_seconds=call.settings.reuse_hours * HOUR,
        max_credits_per_day=call.settings.max_credits_per_day,
        max_jobs_per_hour=call.settings.max_jobs_per_hour,
        force_new=force_new,
    )
    extraction = ExtractionRequest(chosen, options, audio_url=url_arg, audio_file=part, webhook_url=hook)
    return await _preview(call, Plan(request, extraction, policy, submits=True, question=""))


def _inputs(
    call: Call, audio_file: str | None, audio_url: str | None, webhook_url: str | None
) -> tuple[str | None, str | None, str | None]:
    """The audio (a path or a URL, exactly one) and the webhook, checked; blank means absent."""
    file_arg = audio_file.strip() if audio_file and audio_file.strip() else None
    url_arg = audio_url.strip() if audio_url and audio_url.strip() else None
    if file_arg and url_arg:
        raise BadAudio("Give either audio_file or audio_url, not both.")
    if not file_arg and not url_arg:
        raise BadAudio(
            "Give the audio to split: audio_file (an absolute local path such as ~/Music/song.mp3) or "
            "audio_url (an http(s) URL)."
        )
    if file_arg and not call.state.local_files_allowed:
        raise BadAudio(
            "This server runs remotely, so a path names a file on the server, not on the user's computer; "
            "local files are refused here. Give audio_url (an http(s) URL of the song) instead."
        )
    if url_arg:
        check_url("audio_url", url_arg)
    hook = webhook_url.strip() if webhook_url and webhook_url.strip() else None
    if hook:
        check_webhook_url(hook, call.settings.webhook_urls)
    return file_arg, url_arg, hook


async def _preview(call: Call, plan: Plan) -> Plan:
    """Before asking the user to pay: is there anything to pay for, is it allowed at all, and what did such a
    job cost before? When nobody will be asked, the claim decides everything (reuse, limits, unknown outcomes)
    in one transaction, so a look ahead would only cost time."""
    if not will_ask(call):
        return plan
    ledger = await call.ledger()
    preview = await ledger.preview(plan.request, plan.policy, time.time())
    if isinstance(preview, Unknown):
        raise submission.Refused(submission.unknown_message(preview.job))
    if isinstance(preview, LimitReached):
        raise submission.Refused(submission.limit_message(preview))
    costs = await ledger.recent_costs(plan.request, 3) if isinstance(preview, Claimed) else []
    part = plan.extraction.audio_file
    question = summaries.consent_question(plan.request, part.size if part else None, plan.extraction.webhook_url, costs)
    return Plan(plan.request, plan.extraction, plan.policy, not isinstance(preview, Reused | InFlight), question)


# The plan of the call being served, as a parameter of the consent resolver and the tool.
Planned = Annotated[Plan, Resolve(_plan)]
