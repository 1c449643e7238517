"""extract_stems: the one paid tool. Everything that can be checked is checked before a byte leaves
the machine; the ledger decides whether to reuse, wait, refuse or submit; the user is asked first.

Two resolvers run before the body (the SDK's protocol-neutral way of asking the client): `_plan`
validates the call and asks the ledger what would happen, and `_consent` asks the user when a paid
submit would follow. On 2026-07-28 clients they run again when the client retries with the answer,
so they have no side effects beyond remembering a file's hash.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Final

import anyio
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from .. import answers, submission, summaries
from ..catalog import DEFAULT_STEMS, PREPROCESSING_OPTIONS, STEMS
from ..errors import tool_errors
from ..files import check_audio_file
from ..fingerprint import fingerprint_file, fingerprint_url
from ..ledger import Claimed, InFlight, Job, JobRequest, LimitReached, Policy, Reused, Unknown, iso
from ..ledger.base import HOUR
from ..models import ExtractionSubmitted
from ..musicgpt import ExtractionRequest, MissingAPIKeyError
from ..state import AppState, app_state
from ..urls import check_url, check_webhook_url
from ..visible import shown
from .common import PreprocessingList, RootsForAudioFile, StemList, ToolSpec, allowed, catalog_names, result

MAX_URL_LENGTH = 2048

DESCRIPTION = """\
Split a song into separate stems (vocals, drums, bass, guitar, piano, ...) with MusicGPT.

Costs money: each new job spends credits from the user's MusicGPT account (see credit_estimate); an \
identical recent job is returned free (reused=true). Call it once per song, only when the user asked \
for stems. If a call fails, read the error before calling again: some failures may already have been \
charged.

Give audio_file (a local path) or audio_url. It returns at once with a task_id and an eta in seconds. \
Next: get_extraction with wait_seconds until the job is done, then download_stems."""


class Consent(BaseModel):
    """The form the user sees before a paid job (elicitation): accepting it is the consent."""

    submit: bool = Field(
        default=True,
        title="Submit this paid job",
        description="Leave it checked and accept to submit; MusicGPT charges credits for the job.",
    )


# What `_consent` answers when it does not ask the user.
NO_SUBMIT: Final = "no-submit"  # an identical job will be reused (or is under way): nothing to pay
UNASKED: Final = "unasked"  # MUSICGPT_MCP_CONFIRM=never, or auto with a client that cannot ask
CANNOT_ASK: Final = "cannot-ask"  # MUSICGPT_MCP_CONFIRM=always with a client that cannot ask


@dataclass(frozen=True)
class Plan:
    request: JobRequest
    extraction: ExtractionRequest
    policy: Policy
    submits: bool  # False when the ledger expects to return an identical job instead
    question: str  # what the user is asked before paying


@tool_errors
async def _plan(
    ctx: Context[AppState],
    audio_file: str | None,
    audio_url: str | None,
    stems: list[str],
    preprocessing_options: list[str],
    webhook_url: str | None,
    force_new: bool,
    client_roots: RootsForAudioFile,
) -> Plan:
    state = app_state(ctx)
    stems = catalog_names("stems", stems, STEMS, "a stem MusicGPT separates")
    preprocessing_options = catalog_names(
        "preprocessing_options", preprocessing_options, PREPROCESSING_OPTIONS, "a clean-up option"
    )
    file_arg = audio_file.strip() if audio_file and audio_file.strip() else None
    url_arg = audio_url.strip() if audio_url and audio_url.strip() else None
    if file_arg and url_arg:
        raise ToolError("Give either audio_file or audio_url, not both. Nothing was submitted.")
    if not file_arg and not url_arg:
        raise ToolError(
            "Give the audio to split: audio_file (an absolute local path such as ~/Music/song.mp3) or "
            "audio_url (an http(s) URL). Nothing was submitted."
        )
    if file_arg and not state.local_files_allowed:
        raise ToolError(
            "This server runs remotely, so a path names a file on the server, not on the user's computer; "
            "local files are refused here. Give audio_url (an http(s) URL of the song) instead. Nothing was submitted."
        )
    if url_arg:
        check_url("audio_url", url_arg)
    hook = webhook_url.strip() if webhook_url and webhook_url.strip() else None
    _, settings = state.require()
    if hook:
        check_webhook_url(hook, settings.webhook_urls)
    who = state.who()
    if not who.client.has_key:
        raise MissingAPIKeyError()  # before the user is asked to pay for a job that cannot be sent
    ledger = await state.require_ledger()
    await state.adopt_account(ledger, who)
    part = None
    if file_arg:
        part = await anyio.to_thread.run_sync(
            check_audio_file, file_arg, allowed(state, client_roots), settings.max_upload_bytes
        )
        fingerprint = await fingerprint_file(part, ledger)
    else:
        fingerprint = fingerprint_url(url_arg or "")
    request = JobRequest(
        owner=who.owner,
        account=who.account,
        fingerprint=fingerprint,
        source_kind="file" if part else "url",
        # Shown escaped wherever it appears (the consent question, the model's text, the ledger): a file's name
        # is the one piece of the question nobody checked, and a line break in it would add a line of its own.
        source_name=shown(part.filename) if part else (url_arg or ""),
        stems=tuple(stems) or DEFAULT_STEMS,
        options=tuple(preprocessing_options),
    )
    policy = Policy(
        reuse_seconds=settings.reuse_hours * HOUR,
        max_credits_per_day=settings.max_credits_per_day,
        max_jobs_per_hour=settings.max_jobs_per_hour,
        force_new=force_new,
    )
    extraction = ExtractionRequest(
        stems=list(stems),
        preprocessing_options=list(preprocessing_options),
        audio_url=url_arg,
        audio_file=part,
        webhook_url=hook,
    )
    if not _will_ask(ctx):
        # Nobody will be asked: the claim decides everything (reuse, limits, unknown outcomes) in one
        # transaction, so a look ahead would only cost time.
        return Plan(request=request, extraction=extraction, policy=policy, submits=True, question="")
    # Before asking the user to pay: is there anything to pay for, and is it allowed at all?
    preview = await ledger.preview(request, policy, time.time())
    if isinstance(preview, Unknown):
        raise ToolError(submission.unknown_message(preview.job))
    if isinstance(preview, LimitReached):
        raise ToolError(submission.limit_message(preview))
    costs = await ledger.recent_costs(request, 3) if isinstance(preview, Claimed) else []
    return Plan(
        request=request,
        extraction=extraction,
        policy=policy,
        submits=not isinstance(preview, Reused | InFlight),
        question=summaries.consent_question(request, part.size if part else None, hook, costs),
    )


def _can_ask(ctx: Context[AppState]) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # The SDK counts a bare `elicitation: {}` as form support; a url-only client cannot show a form.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _will_ask(ctx: Context[AppState]) -> bool:
    settings = app_state(ctx).settings
    mode = settings.confirm if settings is not None else "auto"
    return mode != "never" and _can_ask(ctx)


async def _consent(ctx: Context[AppState], plan: Annotated[Plan, Resolve(_plan)]) -> Elicit[Consent] | str:
    settings = app_state(ctx).settings
    if not plan.submits:
        return NO_SUBMIT
    mode = settings.confirm if settings is not None else "auto"
    if mode == "never":
        return UNASKED
    if not _can_ask(ctx):
        return CANNOT_ASK if mode == "always" else UNASKED
    return Elicit(plan.question, Consent)


async def extract_stems(
    ctx: Context[AppState],
    audio_file: Annotated[
        str | None,
        Field(
            description=(
                "Absolute path of a local audio file (mp3, wav, flac, m4a, ...) or one starting with ~, "
                "e.g. ~/Music/song.mp3; it is uploaded to MusicGPT. Give this or audio_url."
            ),
            max_length=4096,
        ),
    ] = None,
    audio_url: Annotated[
        str | None,
        Field(
            description=("An http(s) URL of the audio, which MusicGPT fetches itself. Give this or audio_file."),
            max_length=MAX_URL_LENGTH,
        ),
    ] = None,
    stems: Annotated[
        StemList,
        Field(
            description=(
                f"Stems to separate, each once. Empty: MusicGPT's default set ({', '.join(DEFAULT_STEMS)}). "
                "'instrumental' makes a karaoke track, 'vocals' an a cappella. The resource musicgpt://stems "
                "describes each."
            ),
        ),
    ] = [],  # noqa: B006 - pydantic copies defaults; the schema needs a literal default
    preprocessing_options: Annotated[
        PreprocessingList,
        Field(
            description=(
                "Clean-up before separation, each once: Denoise, Deecho, Dereverb. Usually none; for live "
                "or home recordings."
            ),
        ),
    ] = [],  # noqa: B006
    webhook_url: Annotated[
        str | None,
        Field(
            description=(
                "URL MusicGPT POSTs the result to when the job ends. Only when the user gives one; it must "
                "start with an address in MUSICGPT_MCP_WEBHOOK_URLS."
            ),
            max_length=MAX_URL_LENGTH,
        ),
    ] = None,
    force_new: Annotated[
        bool,
        Field(
            description=(
                "Submit even if an identical recent job exists or an identical earlier submit's outcome is "
                "unknown. Costs credits again: only when the user asks for a fresh job or has checked their "
                "MusicGPT dashboard."
            )
        ),
    ] = False,
    plan: Annotated[Plan | None, Resolve(_plan)] = None,
    consent: Annotated[ElicitationResult[Consent], Resolve(_consent)] = None,  # type: ignore[assignment]
) -> Annotated[CallToolResult, ExtractionSubmitted]:
    assert plan is not None  # filled by its resolver
    state = app_state(ctx)
    client = state.who().client
    may_submit = _consented(consent)
    ledger = await state.require_ledger()
    progress = _upload_progress(ctx, plan.extraction.audio_file.size) if plan.extraction.audio_file else None
    # An answer given in an input-required round (2026-07-28) is spent by the submission it allows.
    answer = (
        answers.current() if isinstance(consent, AcceptedElicitation) and isinstance(consent.data, Consent) else None
    )
    outcome = await submission.submit(
        ledger, client, plan.request, plan.extraction, plan.policy, progress, may_submit=may_submit, answer=answer
    )
    submitted = submitted_model(outcome.job, outcome.reused, time.time())
    text = summaries.submitted(submitted, outcome.job.status, downloads_offered=state.offers_downloads)
    return result(text, submitted)


def _consented(consent: ElicitationResult[Consent]) -> bool:
    """Whether the body may pay for a new job; raises when the user said no."""
    if not isinstance(consent, AcceptedElicitation):
        raise ToolError(
            "The user declined the paid extraction, so nothing was submitted and nothing was charged. Do not "
            "call extract_stems again unless the user asks for it."
        )
    answer = consent.data
    if isinstance(answer, Consent):
        if not answer.submit:
            raise ToolError(
                "The user unchecked 'Submit this paid job', so nothing was submitted and nothing was charged."
            )
        return True
    if answer == CANNOT_ASK:
        raise ToolError(
            "This server is set to ask the user before every paid job (MUSICGPT_MCP_CONFIRM=always), and this "
            "MCP client cannot show such a question (it does not support elicitation). Nothing was submitted. "
            "Use a client that supports elicitation, or set MUSICGPT_MCP_CONFIRM=auto in the server's environment."
        )
    return bool(answer == UNASKED)


def submitted_model(job: Job, reused: bool, now: float) -> ExtractionSubmitted:
    eta = job.eta if job.eta is not None else -1
    if reused and eta >= 0:
        eta = max(0, round(job.submitted_at + eta - now))
    return ExtractionSubmitted(
        task_id=job.task_id or "",
        conversion_id=job.conversion_id,
        eta=eta,
        credit_estimate=job.credit_estimate,
        stems=list(job.stems),  # type: ignore[arg-type] # the ledger holds catalog names only
        preprocessing_options=list(job.options),  # type: ignore[arg-type]
        source=job.source_name,
        source_type=job.source_kind,
        submitted_at=iso(job.submitted_at),
        reused=reused,
    )


def _upload_progress(ctx: Context[AppState], total: int) -> Callable[[int], Awaitable[None]]:
    """Progress for an upload, at most every half second (and at the end): a long upload shows
    movement, and hosts that extend their timeout on progress keep the call alive."""
    last = 0.0

    async def report(sent: int) -> None:
        nonlocal last
        now = time.monotonic()
        if sent < total and now - last < 0.5:
            return
        last = now
        await ctx.report_progress(sent, total, f"uploaded {summaries.size(sent)} of {summaries.size(total)}")

    return report


SPEC = ToolSpec(
    fn=extract_stems,
    name="extract_stems",
    title="Extract stems from a song",
    description=DESCRIPTION,
    read_only=False,
    idempotent=False,
)
