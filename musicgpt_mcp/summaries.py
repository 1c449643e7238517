"""What the model reads: results built from MusicGPT's replies, and the short text beside each.

The structured result is for programs; the text is for the model, so it says what happened and
what to call next.
"""

from __future__ import annotations

from .catalog import Stem
from .downloads import screen
from .ledger import JobRequest
from .models import ExtractionList, ExtractionStatus, ExtractionSubmitted, StemsDownloaded, StemUrls
from .musicgpt import contract

SANDBOX_NOTE = "sandbox: made-up credits, nothing is charged"
# Set once at start-up by `musicgpt-mcp --sandbox`, whose process talks only to the offline double: its
# prices are invented, and a model must not pass them on as MusicGPT's. A process that can reach MusicGPT
# never sets it, so no real job's text carries the note.
_sandbox = False


def mark_sandbox() -> None:
    global _sandbox
    _sandbox = True


def _made_up() -> str:
    return f" ({SANDBOX_NOTE})" if _sandbox else ""


def status_model(task_id: str, status: contract.StatusReply, waited: float) -> ExtractionStatus:
    stems: dict[Stem, StemUrls] = {}
    ignored: list[str] = []
    for fmt, urls in (("mp3", status.mp3), ("wav", status.wav)):
        known, skipped = screen(urls)
        ignored += [f"{s.stem!r} ({fmt}): {s.reason}" for s in skipped]
        for key, url in known.items():
            entry = stems.setdefault(key, StemUrls(mp3_url=None, wav_url=None))
            if fmt == "mp3":
                entry.mp3_url = url
            else:
                entry.wav_url = url
    return ExtractionStatus(
        task_id=task_id,
        conversion_id=status.conversion_id,
        status=status.status,
        done=status.done,
        succeeded=status.done and not status.failed,
        status_message=status.status_message,
        conversion_cost=status.conversion_cost,
        stems=stems,
        ignored=ignored,
        waited_seconds=round(waited, 1),
    )


def submitted(result: ExtractionSubmitted, last_status: str | None = None, *, downloads_offered: bool = True) -> str:
    what = ", ".join(result.stems)
    extras = f" with {', '.join(result.preprocessing_options)}" if result.preprocessing_options else ""
    nxt = f"Next: call get_extraction with task_id={result.task_id!r} and wait_seconds to wait for the stems."
    if result.reused:
        known = f" Its last known status is {last_status}." if last_status else ""
        if last_status == "COMPLETED":
            nxt = (
                f"Next: call download_stems with task_id={result.task_id!r} to save the stems."
                if downloads_offered
                else f"Next: call get_extraction with task_id={result.task_id!r} for links to the stem files."
            )
        return (
            f"No new job was submitted and no credits were spent: an identical extraction of {result.source} "
            f"({what}){extras} was submitted at {result.submitted_at}, task_id: {result.task_id}.{known} {nxt} "
            "(If the user wants a fresh paid job anyway, call extract_stems with force_new=true.)"
        )
    wait = f"about {result.eta} s" if result.eta >= 0 else "an unknown time"
    cost = count(result.credit_estimate, "credit") if result.credit_estimate is not None else "not stated"
    return (
        f"Submitted {result.source} to MusicGPT for stem extraction ({what}){extras}. "
        f"task_id: {result.task_id}. Expected wait: {wait}; estimated cost: {cost}{_made_up()}. {nxt}"
    )


def awaiting(result: ExtractionSubmitted) -> str:
    """What the model reads when the user is to act in the stem view before anything is paid."""
    what = ", ".join(result.stems)
    extras = f" with {', '.join(result.preprocessing_options)}" if result.preprocessing_options else ""
    if result.state == "awaiting_audio":
        return (
            f"Nothing was submitted and nothing was spent. The stem view shown with this result asks the user for "
            f"the song ({what}{extras}): they pick or drop a file there, see what it would cost, and approve it. "
            "Tell the user; then wait. The view tells you the task_id once the job is submitted (or call "
            "list_extractions later). Do not call extract_stems again for this."
        )
    return (
        f"Nothing was submitted and nothing was spent yet: the user approves this paid extraction of "
        f"{result.source} ({what}){extras} in the stem view shown with this result, which shows what it costs. "
        f"Tell the user; the quote stands until {result.expires_at}. Once they approve, the view tells you the "
        "task_id (or call list_extractions to find it), then call get_extraction. Calling extract_stems again for "
        "the same song returns this same quote."
    )


def consent_question(request: JobRequest, size: int | None, webhook_url: str | None, costs: list[float]) -> str:
    """What the user is asked before a paid job. Word for word the same on every round of one call
    (2026-07-28 clients answer by retrying, and an answer counts only for the question it answered),
    so nothing in it may depend on the clock."""
    if request.source_kind == "file":
        audio = (
            f"{request.source_name} ({size_text(size)}, uploaded from this computer)" if size else request.source_name
        )
    else:
        audio = f"{request.source_name} (MusicGPT fetches it)"
    if costs:
        listed = ", ".join(f"{c:g}" for c in costs)
        cost = (
            f"the last job with the same stems and options cost {count(costs[0], 'credit')}"
            if len(costs) == 1
            else f"the last {len(costs)} jobs with the same stems and options cost {listed} credits"
        )
    else:
        cost = "MusicGPT states the cost when the job is accepted"
    lines = [
        "Submit a paid stem extraction to MusicGPT? It spends MusicGPT credits.",
        f"Audio: {audio}",
        f"Stems: {', '.join(request.stems)}",
        f"Clean-up: {', '.join(request.options) or 'none'}",
        f"Cost: {cost}{_made_up()}.",
    ]
    if webhook_url:
        lines.append(f"MusicGPT will send the result to: {webhook_url}")
    return "\n".join(lines)


def size_text(n: int | None) -> str:
    return size(n) if n is not None else "unknown size"


def extractions(result: ExtractionList, status: str | None, query: str | None) -> str:
    totals = (
        f"Credits spent: {result.credits_last_24_hours:g} in the last 24 hours, "
        f"{result.credits_last_30_days:g} in the last 30 days{_made_up()}."
    )
    if not result.extractions:
        filters = " matching that filter" if status or query else ""
        return f"No extractions{filters} in this server's ledger. {totals}"
    lines = [f"{count(len(result.extractions), 'extraction')}, newest first. {totals}"]
    for job in result.extractions:
        cost = f", {count(job.credits, 'credit')}" if job.credits is not None else ""
        saved = f", saved in {'; '.join(job.saved_to)}" if job.saved_to else ""
        tid = job.task_id or "no task_id"
        lines.append(f"- {job.submitted_at} {job.source} ({', '.join(job.stems)}): {job.status}{cost}{saved}; {tid}")
    return "\n".join(lines)


def status(
    result: ExtractionStatus, eta_left: float | None, asked: int, wait: int, *, downloads_offered: bool = True
) -> str:
    """`eta_left`: seconds to MusicGPT's estimate, when known; `asked`/`wait`: the wait asked for and granted;
    `downloads_offered`: False on a shared server that does not save to its own disk (the files are linked)."""
    tid = result.task_id
    if result.succeeded:
        formats = sorted({f for u in result.stems.values() for f, v in (("mp3", u.mp3_url), ("wav", u.wav_url)) if v})
        nxt = (
            f"Next: call download_stems with task_id={tid!r} to save them."
            if downloads_offered
            else "The stem files are linked below (MusicGPT's storage URLs, which expire): give the user the links."
        )
        return (
            f"Extraction {tid} is COMPLETED: {', '.join(result.stems) or 'no stems listed'} ready "
            f"({' and '.join(formats) or 'no files'}). {nxt}"
        )
    if result.done:
        reason = f": {result.status_message}" if result.status_message else " (MusicGPT gave no reason)"
        return (
            f"Extraction {tid} ended with {result.status}{reason}. No stems were produced. Tell the user; "
            "submitting again with extract_stems would be a new paid job."
        )
    note = ""
    if result.status not in ("IN_QUEUE", "IN_PROGRESS"):
        note = f" MusicGPT reported status {result.status!r}, which this server does not know; treating it as still running."
    left = f", about {round(eta_left)} s left by MusicGPT's estimate" if eta_left is not None and eta_left >= 1 else ""
    capped = f" (wait_seconds was capped at {wait})" if asked > wait else ""
    waited = f" after waiting {result.waited_seconds:g} s{capped}" if asked else ""
    return (
        f"Extraction {tid} is {result.status}{left}{waited}.{note} Call get_extraction again with "
        f"task_id={tid!r} and wait_seconds={wait or 30} to keep waiting."
    )


def downloaded(result: StemsDownloaded) -> str:
    lines = [f"Saved {count(len(result.files), 'stem file')} for extraction {result.task_id} in {result.directory}:"]
    for f in result.files:
        kept = " (already there, identical)" if f.already_present else ""
        lines.append(f"- {f.stem}: {f.path} ({size(f.bytes)}){kept}")
    for s in result.skipped:
        lines.append(f"- not saved: {s.stem}: {s.reason}")
    return "\n".join(lines)


def size(n: int) -> str:
    if n >= 1_048_576:
        return f"{n / 1_048_576:.1f} MB"
    return f"{max(1, round(n / 1024))} KB"


def count(n: float, noun: str) -> str:
    """ "1 credit", "0.5 credits", "2 stem files": the noun is singular for exactly one."""
    return f"{n:g} {noun}" if n == 1 else f"{n:g} {noun}s"
