"""What an extract_stems call would do, worked out before anything is paid for: every argument checked, the
audio fingerprinted, and (when the user is to be asked, by a question or in the stem view) the ledger's verdict
previewed and the question written.

A resolver (the SDK's protocol-neutral way of running code before a tool's body): on 2026-07-28 clients it runs
again on the round that carries the user's answer, so it has no side effect beyond remembering a file's hash.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Resolve
from pydantic import BaseModel, Field, ValidationError

from .. import submission, summaries
from ..call import Call
from ..catalog import DEFAULT_STEMS, PREPROCESSING_OPTIONS, STEMS
from ..clients import abilities
from ..config import Settings
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

# Who says yes to a paid job: a question (elicitation), the stem view (a host that renders it but cannot ask),
# or nobody (MUSICGPT_MCP_CONFIRM=never, or a host that can do neither).
Asker = Literal["question", "view"] | None


class BadAudio(Failure):
    """The call does not name one song this server may send."""

    consequence = "Nothing was submitted."


class AttachedFile(BaseModel):
    """A file the user attached in ChatGPT, as ChatGPT passes it (`openai/fileParams`)."""

    download_url: str = Field(description="Where the file can be fetched (for a short while).")
    file_id: str | None = Field(default=None, description="ChatGPT's ID of the file.")
    file_name: str | None = Field(default=None, description="The file's name.")
    mime_type: str | None = Field(default=None, description="The file's media type.")


def attached(given: dict[str, Any] | None) -> AttachedFile | None:
    """ChatGPT's attached file, read from the plain object the tool's schema takes."""
    if not given:
        return None
    try:
        return AttachedFile.model_validate(given)
    except ValidationError:
        raise BadAudio("file must be the object ChatGPT passes for an attached file, with a download_url.") from None


@dataclass(frozen=True)
class Plan:
    request: JobRequest
    extraction: ExtractionRequest
    policy: Policy
    submits: bool  # False when the ledger expects to return an identical job instead
    question: str  # what the user is asked before paying ("" when nobody will be)
    asker: Asker = None
    # No song named, in a host that shows the stem view: the user picks one there (request and extraction are
    # placeholders then, carrying only the stems and options).
    wants_audio: bool = False


def asker(call: Call) -> Asker:
    """Who approves a paid job: a question when the client can show one; else the stem view when the client
    renders it (claude.ai and ChatGPT cannot ask, but show the view); else nobody (and MUSICGPT_MCP_CONFIRM=always
    then refuses). Never anybody with MUSICGPT_MCP_CONFIRM=never."""
    if call.settings.confirm == "never":
        return None
    found = abilities(call.ctx)
    if found.can_elicit:
        return "question"
    return "view" if found.renders_apps else None


def policy(settings: Settings, force_new: bool) -> Policy:
    return Policy(
        reuse_seconds=settings.reuse_hours * HOUR,
        max_credits_per_day=settings.max_credits_per_day,
        max_jobs_per_hour=settings.max_jobs_per_hour,
        force_new=force_new,
    )


@tool_errors
async def _plan(
    call: CurrentCall,
    audio_file: str | None,
    audio_url: str | None,
    stems: list[str],
    preprocessing_options: list[str],
    webhook_url: str | None,
    force_new: bool,
    file: dict[str, Any] | None,
    client_roots: RootsForAudioFile,
) -> Plan:
    chosen = catalog_names("stems", stems, STEMS, "a stem MusicGPT separates")
    options = catalog_names("preprocessing_options", preprocessing_options, PREPROCESSING_OPTIONS, "a clean-up option")
    who = asker(call)
    # The view asks for a song wherever it is shown, whoever approves the cost (with confirm=never, nobody).
    picks = bool(abilities(call.ctx).renders_apps)
    file_arg, url_arg, hook, name = _inputs(call, audio_file, audio_url, webhook_url, attached(file), picks)
    if not call.client.has_key:
        raise MissingAPIKeyError()  # before the user is asked to pay for a job that cannot be sent
    if file_arg is None and url_arg is None:
        return _wanting_audio(call, chosen, options, force_new)
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
        source_name=shown(part.filename) if part else (name or url_arg or ""),
        stems=tuple(chosen) or DEFAULT_STEMS,
        options=tuple(options),
    )
    extraction = ExtractionRequest(chosen, options, audio_url=url_arg, audio_file=part, webhook_url=hook)
    plan = Plan(request, extraction, policy(call.settings, force_new), submits=True, question="", asker=who)
    return await preview(call, plan)


def _inputs(
    call: Call,
    audio_file: str | None,
    audio_url: str | None,
    webhook_url: str | None,
    attached: AttachedFile | None,
    view: bool,
) -> tuple[str | None, str | None, str | None, str | None]:
    """The audio (a path, a URL, or a file attached in ChatGPT: one at most; none only when the view will ask
    for one), the webhook, and the name to give the job; blank means absent."""
    file_arg = audio_file.strip() if audio_file and audio_file.strip() else None
    url_arg = audio_url.strip() if audio_url and audio_url.strip() else None
    name = None
    if attached is not None and attached.download_url.strip():
        if file_arg or url_arg:
            raise BadAudio("Give one song: audio_file, audio_url, or an attached file, not several.")
        check_url("file.download_url", attached.download_url.strip())
        url_arg, name = attached.download_url.strip(), shown(attached.file_name.strip()) if attached.file_name else None
    if file_arg and url_arg:
        raise BadAudio("Give either audio_file or audio_url, not both.")
    if not file_arg and not url_arg and not view:
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
    return file_arg, url_arg, hook, name


def _wanting_audio(call: Call, stems: Sequence[str], options: Sequence[str], force_new: bool) -> Plan:
    request = JobRequest(call.owner, call.account, "", "file", "", tuple(stems) or DEFAULT_STEMS, tuple(options))
    extraction = ExtractionRequest(stems, options)
    return Plan(request, extraction, policy(call.settings, force_new), False, "", "view", wants_audio=True)


async def preview(call: Call, plan: Plan) -> Plan:
    """Before asking the user to pay: is there anything to pay for, is it allowed at all, and what did such a
    job cost before? When nobody will be asked, the claim decides everything (reuse, limits, unknown outcomes)
    in one transaction, so a look ahead would only cost time."""
    if plan.asker is None:
        return plan
    ledger = await call.ledger()
    verdict = await ledger.preview(plan.request, plan.policy, time.time())
    if isinstance(verdict, Unknown):
        raise submission.Refused(submission.unknown_message(verdict.job))
    if isinstance(verdict, LimitReached):
        raise submission.Refused(submission.limit_message(verdict))
    costs = await ledger.recent_costs(plan.request, 3) if isinstance(verdict, Claimed) else []
    part = plan.extraction.audio_file
    question = summaries.consent_question(plan.request, part.size if part else None, plan.extraction.webhook_url, costs)
    submits = not isinstance(verdict, Reused | InFlight)
    return Plan(plan.request, plan.extraction, plan.policy, submits, question, plan.asker)


# The plan of the call being served, as a parameter of the consent resolver and the tool.
Planned = Annotated[Plan, Resolve(_plan)]
