"""The tools' structured results, as the model sees them (each becomes an outputSchema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .catalog import Preprocessing, Stem


class ExtractionSubmitted(BaseModel):
    """A paid job MusicGPT accepted, an identical one returned free, or (in a host that shows the stem view) a job
    that waits for the user: to approve its cost there, or to pick the song there."""

    state: Literal["submitted", "reused", "awaiting_approval", "awaiting_audio", "cancelled"] = Field(
        description="submitted: a new paid job; reused: an identical recent job, free; awaiting_approval: nothing "
        "sent yet, the user approves the cost in the stem view; awaiting_audio: nothing sent yet, the user picks the "
        "song in the stem view; cancelled: the user cancelled in the view."
    )
    task_id: str | None = Field(
        description="MusicGPT's task ID: pass it to get_extraction and download_stems. Null until a job exists."
    )
    conversion_id: str | None = Field(description="MusicGPT's conversion ID for the same job, if it gave one.")
    eta: int = Field(description="Seconds until MusicGPT expects the stems to be ready; -1 when unknown.")
    credit_estimate: float | None = Field(
        description="MusicGPT credits this job is expected to cost; null when MusicGPT did not say."
    )
    stems: list[Stem] = Field(description="The stems requested (MusicGPT's default set when none were named).")
    preprocessing_options: list[Preprocessing] = Field(description="The preprocessing requested.")
    source: str | None = Field(description="The audio: the file's name, or the URL; null until the user picks one.")
    source_type: Literal["file", "url", "upload"] | None = Field(
        description="A local file, a URL, or a file the user uploaded in the view."
    )
    submitted_at: str | None = Field(description="When the job was submitted (ISO 8601, UTC); null until then.")
    reused: bool = Field(
        description="True when an identical recent job was returned instead of submitting: no credits were spent."
    )
    expires_at: str | None = Field(
        default=None, description="Until when the user can approve (awaiting_*), ISO 8601 UTC; null otherwise."
    )


class StemUrls(BaseModel):
    mp3_url: str | None = Field(description="Where MusicGPT stores the MP3 of this stem; null if none.")
    wav_url: str | None = Field(description="Where MusicGPT stores the WAV of this stem; null if none.")


class ExtractionStatus(BaseModel):
    """A job's state as MusicGPT reports it."""

    task_id: str = Field(description="The task ID asked about.")
    conversion_id: str | None = Field(description="MusicGPT's conversion ID, if it gave one.")
    status: str = Field(
        description="MusicGPT's status as given: IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED or ERROR (others are "
        "reported as they come and treated as still running)."
    )
    done: bool = Field(description="True once the job has finished, successfully or not.")
    succeeded: bool = Field(description="True when the job finished and its stems can be downloaded.")
    status_message: str | None = Field(description="MusicGPT's message, e.g. the reason a job failed.")
    conversion_cost: float | None = Field(description="Credits MusicGPT charged for the job, when it says.")
    stems: dict[Stem, StemUrls] = Field(description="Each finished stem and where to fetch it.")
    ignored: list[str] = Field(description="Parts of MusicGPT's reply that were not used, and why.")
    waited_seconds: float = Field(description="How long this call waited for the job.")


class SavedFile(BaseModel):
    stem: Stem = Field(description="Which stem this file holds.")
    path: str = Field(description="Absolute path of the file on the user's disk.")
    format: Literal["mp3", "wav"] = Field(description="Audio format.")
    bytes: int = Field(description="File size in bytes.")
    already_present: bool = Field(
        description="True when an identical file was already there (from an earlier download) and was kept."
    )


class SkippedStem(BaseModel):
    stem: str = Field(description="The stem (or unrecognised name) that was not saved.")
    reason: str = Field(description="Why it was not saved.")


class StemsDownloaded(BaseModel):
    """What was saved where."""

    task_id: str = Field(description="The job the stems came from.")
    directory: str = Field(description="The folder the files were saved in.")
    files: list[SavedFile] = Field(description="The files saved, one per stem.")
    skipped: list[SkippedStem] = Field(description="Stems not saved, with the reason for each.")


class ExtractionRecord(BaseModel):
    task_id: str | None = Field(description="MusicGPT's task ID; null when the submit's outcome is unknown.")
    source: str = Field(description="The audio: the local file's name, or the URL.")
    source_type: Literal["file", "url"] = Field(description="Whether a local file or a URL was submitted.")
    stems: list[Stem] = Field(description="The stems requested.")
    preprocessing_options: list[Preprocessing] = Field(description="The preprocessing requested.")
    status: str = Field(
        description="The last status known: SUBMITTED (not checked since), IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, "
        "ERROR, or OUTCOME_UNKNOWN (the submit may have been charged; no task_id)."
    )
    status_message: str | None = Field(
        description="MusicGPT's last message about the job, or why its outcome is unknown."
    )
    submitted_at: str = Field(description="When it was submitted (ISO 8601, UTC).")
    finished_at: str | None = Field(description="When it was first seen finished (ISO 8601, UTC).")
    credits: float | None = Field(description="What it cost: MusicGPT's stated cost, else its estimate.")
    saved_to: list[str] = Field(description="Folders its stems were saved in by download_stems.")


class ExtractionList(BaseModel):
    """Recent jobs from the ledger, newest first, and what they cost."""

    extractions: list[ExtractionRecord] = Field(description="The jobs, newest first.")
    credits_last_24_hours: float = Field(
        description="Credits of every job submitted in the last 24 hours, as the daily limit counts them (a job "
        "whose cost is not known yet counts at an estimate)."
    )
    credits_last_30_days: float = Field(description="The same for the last 30 days.")


class StemAudioChunk(BaseModel):
    """A slice of one stem's audio file, for the in-chat player (never for the model)."""

    task_id: str = Field(description="The job the stem belongs to.")
    stem: Stem = Field(description="Which stem.")
    format: Literal["mp3", "wav"] = Field(description="The audio format of the file.")
    mime_type: str = Field(description="The file's media type (audio/mpeg or audio/wav).")
    offset: int = Field(description="Where this slice starts in the file, in bytes.")
    length: int = Field(description="Bytes in this slice.")
    total_bytes: int = Field(description="The whole file's size in bytes.")
    eof: bool = Field(description="True when this slice reaches the end of the file.")
    source: Literal["saved", "fetched"] = Field(
        description="saved: read from the file download_stems saved; fetched: fetched by the server from MusicGPT's storage."
    )
    data: str = Field(description="The slice's bytes, base64-encoded.")


class UploadReceived(BaseModel):
    """How much of a song the stem view has sent; once it is all here, the job it asks for."""

    received: int = Field(description="Bytes received so far.")
    total_bytes: int = Field(description="The song's size in bytes.")
    done: bool = Field(description="True once every byte is here and the song was checked.")
    job: ExtractionSubmitted | None = Field(
        description="Once done: the job, usually awaiting the user's approval in the view; null before."
    )
