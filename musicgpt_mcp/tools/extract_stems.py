"""extract_stems: the one paid tool. Everything that can be checked is checked before a byte leaves the machine
(extract_plan.py); the user is asked first (consent.py); the ledger decides whether to reuse, wait, refuse or
submit, and a submit is made at most once (submission.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.types import CallToolResult
from pydantic import Field, WithJsonSchema

from .. import player, submission, summaries
from ..call import Call
from ..catalog import DEFAULT_STEMS
from ..ledger import Job, iso
from ..models import ExtractionSubmitted
from .args import CurrentCall, PreprocessingList, StemList, result
from .consent import Answer, consented, in_view, spent_answer
from .extract_plan import Planned
from .spec import ToolSpec
from .studio import ask_for_audio, quote, quoted

MAX_URL_LENGTH = 2048

DESCRIPTION = """\
Split a song into separate stems (vocals, drums, bass, guitar, piano, ...) with MusicGPT.

Costs money: each new job spends credits from the user's MusicGPT account (see credit_estimate); an \
identical recent job is returned free (reused=true). Call it once per song, only when the user asked \
for stems. If a call fails, read the error before calling again: some failures may already have been \
charged.

Give audio_file (a local path) or audio_url. It returns at once with a task_id and an eta in seconds. \
Next: get_extraction with wait_seconds until the job is done, then download_stems."""

AudioFile = Annotated[
    str | None,
    Field(
        description=(
            "Absolute path of a local audio file (mp3, wav, flac, m4a, ...) or one starting with ~, "
            "e.g. ~/Music/song.mp3; it is uploaded to MusicGPT. Give this or audio_url."
        ),
        max_length=4096,
    ),
]
AudioUrl = Annotated[
    str | None,
    Field(
        description=("An http(s) URL of the audio, which MusicGPT fetches itself. Give this or audio_file."),
        max_length=MAX_URL_LENGTH,
    ),
]
Stems = Annotated[
    StemList,
    Field(
        description=(
            f"Stems to separate, each once. Empty: MusicGPT's default set ({', '.join(DEFAULT_STEMS)}). "
            "'instrumental' makes a karaoke track, 'vocals' an a cappella. The resource musicgpt://stems "
            "describes each."
        ),
    ),
]
Options = Annotated[
    PreprocessingList,
    Field(
        description=(
            "Clean-up before separation, each once: Denoise, Deecho, Dereverb. Usually none; for live "
            "or home recordings."
        ),
    ),
]
WebhookUrl = Annotated[
    str | None,
    Field(
        description=(
            "URL MusicGPT POSTs the result to when the job ends. Only when the user gives one; it must "
            "start with an address in MUSICGPT_MCP_WEBHOOK_URLS."
        ),
        max_length=MAX_URL_LENGTH,
    ),
]
ForceNew = Annotated[
    bool,
    Field(
        description=(
            "Submit even if an identical recent job exists or an identical earlier submit's outcome is "
            "unknown. Costs credits again: only when the user asks for a fresh job or has checked their "
            "MusicGPT dashboard."
        )
    ),
]


# A plain object in the schema: hosts send every tool's schema to the model on every turn, and only ChatGPT fills
# this one (extract_plan.AttachedFile reads it).
Attached = Annotated[
    dict[str, Any] | None,
    WithJsonSchema({"type": ["object", "null"]}),
    Field(description="Filled by ChatGPT with a file the user attached. Elsewhere omit it; give audio_url instead."),
]


async def extract_stems(
    call: CurrentCall,
    plan: Planned,
    consent: Answer,
    audio_file: AudioFile = None,
    audio_url: AudioUrl = None,
    stems: Stems = [],  # noqa: B006 - pydantic copies defaults; the schema needs a literal default
    preprocessing_options: Options = [],  # noqa: B006
    webhook_url: WebhookUrl = None,
    force_new: ForceNew = False,
    file: Attached = None,
) -> Annotated[CallToolResult, ExtractionSubmitted]:
    if plan.wants_audio:
        return await ask_for_audio(call, plan.request, force_new)
    may_submit = consented(consent)
    if in_view(consent):
        return quoted(*await quote(call, plan.request, plan.extraction, force_new, plan.question))
    part = plan.extraction.audio_file
    progress = _upload_progress(call, part.size) if part is not None else None
    outcome = await submission.submit(
        await call.ledger(),
        call.client,
        plan.request,
        plan.extraction,
        plan.policy,
        progress,
        may_submit=may_submit,
        answer=spent_answer(consent),
    )
    submitted = submitted_model(outcome.job, outcome.reused, time.time())
    text = summaries.submitted(submitted, outcome.job.status, downloads_offered=call.state.offers_downloads)
    return result(text, submitted)


def submitted_model(job: Job, reused: bool, now: float) -> ExtractionSubmitted:
    eta = job.eta if job.eta is not None else -1
    if reused and eta >= 0:
        eta = max(0, round(job.submitted_at + eta - now))
    return ExtractionSubmitted(
        state="reused" if reused else "submitted",
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


def _upload_progress(call: Call, total: int) -> Callable[[int], Awaitable[None]]:
    """Progress for an upload, at most every half second (and at the end): a long upload shows movement, and
    hosts that extend their timeout on progress keep the call alive."""
    last = 0.0

    async def report(sent: int) -> None:
        nonlocal last
        now = time.monotonic()
        if sent < total and now - last < 0.5:
            return
        last = now
        await call.progress(sent, total, f"uploaded {summaries.size(sent)} of {summaries.size(total)}")

    return report


SPEC = ToolSpec(
    fn=extract_stems,
    name="extract_stems",
    title="Extract stems from a song",
    description=DESCRIPTION,
    read_only=False,
    idempotent=False,
    meta={
        # In a host that renders MCP Apps, the stem view shows the result: the quote to approve, the song to
        # pick, then the job as it runs and its stems.
        **player.ui("model"),
        # Claude Code asks the user before every call of a tool marked so, whatever its permission mode.
        "anthropic/requiresUserInteraction": True,
        # ChatGPT fills `file` with a file the user attached.
        "openai/fileParams": ["file"],
    },
)
