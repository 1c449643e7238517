"""The MCP surface: tool schemas and descriptions for a model, and errors it can act on.

Thin on purpose: MusicGPT calls live in `musicgpt`, waiting in `waiting`, file rules in `files`
and `downloads`, the stem list in `catalog`, result shapes in `models`, prompt texts in `prompts`.
This module wires them to MCP and turns their failures into `ToolError`s.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import anyio
from mcp.server.mcpserver import Context, ListRoots, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, ContentBlock, ListRootsResult, ResourceLink, TextContent, ToolAnnotations
from pydantic import AfterValidator, BaseModel, Field

from . import __version__, contract, logs, prompts, summaries
from .catalog import DEFAULT_STEMS, STEM_DESCRIPTIONS, Preprocessing, Stem, catalog_json
from .config import ConfigError, Settings
from .downloads import AUDIO_MIME, OutputRefused, folder_name, plan, resolve_output_dir, save_stems
from .files import AllowedDirs, FileRefused, allowed_dirs, check_audio_file
from .models import (
    ExtractionStatus,
    ExtractionSubmitted,
    SavedFile,
    SkippedStem,
    StemsDownloaded,
)
from .musicgpt import ExtractionRequest, MusicGPTClient, MusicGPTError
from .waiting import EtaHint, wait_for_job

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
# Jobs this process submitted, remembered for their ETA and source name (for polling and folders).
REMEMBERED_JOBS = 1000

INSTRUCTIONS = (
    "Splits songs into stems (vocals, drums, bass, guitar, piano, and more) with MusicGPT. The flow: "
    "extract_stems (paid; returns a task_id) -> get_extraction with wait_seconds until done -> download_stems "
    "(saves the files and returns their paths). The resource musicgpt://stems lists every stem with what it holds."
)

EXTRACT_STEMS_DESCRIPTION = """\
Split a song into separate stems (vocals, drums, bass, guitar, piano, ...) with MusicGPT.

Costs money: every call submits a paid job that spends MusicGPT credits from the user's account \
(the result's credit_estimate says about how many). Call it once per song, only when the user asked \
for stems, and do not call it again for the same song just because a call failed: read the error \
first, since some failures leave the job submitted.

Give exactly one of audio_file (a local path) or audio_url. The call returns at once with a task_id \
and an eta in seconds; the stems are not ready yet. Next: call get_extraction with the task_id and \
wait_seconds to wait for the job, then download_stems to save the stems to disk."""

GET_EXTRACTION_DESCRIPTION = """\
Check a stem extraction job submitted with extract_stems, optionally waiting for it to finish. Free \
(no credits).

With wait_seconds > 0 the call waits (sending progress notifications) until the job is done or the \
wait is over, whichever comes first; if it returns with done=false, call it again. A job that \
FAILED or ended in ERROR is reported with MusicGPT's reason (done=true, succeeded=false). When \
succeeded is true, call download_stems to save the stems."""

DOWNLOAD_STEMS_DESCRIPTION = """\
Save the stems of a finished extraction job to the user's disk and return the file paths. Free (no \
credits). Call it after get_extraction reports succeeded=true.

Files are named after the stem (vocals.mp3, drums.mp3, ...) in a folder per job under the user's \
MusicGPT output folder. An existing file is never overwritten: an identical file is reused, a \
different one gets a new name. Tell the user where the files are."""


@dataclass(frozen=True)
class Submitted:
    hint: EtaHint
    source: str


@dataclass
class AppState:
    client: MusicGPTClient | None
    settings: Settings | None
    config_error: str | None = None
    jobs: OrderedDict[str, Submitted] = field(default_factory=OrderedDict)

    def require(self) -> tuple[MusicGPTClient, Settings]:
        if self.client is None or self.settings is None:
            raise ToolError(self.config_error or "The server is not configured.")
        return self.client, self.settings

    def remember(self, task_id: str, job: Submitted) -> None:
        self.jobs[task_id] = job
        while len(self.jobs) > REMEMBERED_JOBS:
            self.jobs.popitem(last=False)


def _unique(values: list[Any]) -> list[Any]:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice; name each one once")
        seen.add(value)
    return values


StemList = Annotated[list[Stem], AfterValidator(_unique)]
PreprocessingList = Annotated[list[Preprocessing], AfterValidator(_unique)]
TaskId = Annotated[
    str,
    Field(
        description="The task_id that extract_stems returned.",
        min_length=1,
        max_length=200,
        pattern=contract.TASK_ID_PATTERN,
    ),
]


def _client_roots(ctx: Context[AppState], path: str | None) -> ListRoots | None:
    """Ask the client for its roots, only when a path is to be checked against them: not when the
    user configured folders, not when the client offers none, not for URL-only calls."""
    settings = ctx.request_context.lifespan_context.settings
    if not (path and path.strip()) or (settings is not None and settings.allowed_dirs is not None):
        return None
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.roots is None:
        return None
    return ListRoots()


async def _roots_for_audio_file(ctx: Context[AppState], audio_file: str | None = None) -> ListRoots | None:
    return _client_roots(ctx, audio_file)


async def _roots_for_output_dir(ctx: Context[AppState], output_dir: str | None = None) -> ListRoots | None:
    return _client_roots(ctx, output_dir)


RootsForAudioFile = Annotated[ListRootsResult | None, Resolve(_roots_for_audio_file)]
RootsForOutputDir = Annotated[ListRootsResult | None, Resolve(_roots_for_output_dir)]


def _allowed(settings: Settings, roots: ListRootsResult | None) -> AllowedDirs:
    return allowed_dirs(settings.allowed_dirs, [str(r.uri) for r in roots.roots] if roots else None)


def create_server(settings: Settings | Callable[[], Settings] | None = None) -> MCPServer[AppState]:
    """The server. Configuration is `settings`, or made by calling it, or (None) read from the
    environment, at start-up; a configuration error then surfaces in each tool call."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        try:
            if settings is None:
                resolved = Settings.from_env()
            elif isinstance(settings, Settings):
                resolved = settings
            else:
                resolved = settings()
        except ConfigError as exc:
            # Start anyway: a host shows a crashed server as a red dot and nothing else, whereas a
            # tool error tells the user what to fix.
            log.error("configuration error: %s", exc)
            yield AppState(client=None, settings=None, config_error=f"The server's configuration is invalid: {exc}")
            return
        client = MusicGPTClient(
            resolved.base_url,
            resolved.api_key,
            connect_timeout=resolved.connect_timeout,
            read_timeout=resolved.read_timeout,
            write_timeout=resolved.write_timeout,
        )
        if resolved.api_key is None:
            log.warning("MUSICGPT_API_KEY is not set; tools will explain how to set it")
        else:
            logs.redact(resolved.api_key.get_secret_value())
        try:
            yield AppState(client=client, settings=resolved)
        finally:
            await client.aclose()

    server: MCPServer[AppState] = MCPServer(
        "musicgpt-mcp",
        title="MusicGPT stem extraction",
        description="Split songs into stems (vocals, drums, bass, ...) with MusicGPT.",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level="INFO",
    )

    @server.tool(
        description=EXTRACT_STEMS_DESCRIPTION,
        **_presentation("Extract stems from a song", read_only=False, idempotent=False),
    )
    async def extract_stems(
        ctx: Context[AppState],
        audio_file: Annotated[
            str | None,
            Field(
                description=(
                    "Absolute path of a local audio file (mp3, wav, flac, m4a, ...), or a path starting "
                    "with ~, e.g. ~/Music/song.mp3. The file is uploaded to MusicGPT. Give this or "
                    "audio_url, not both."
                ),
                max_length=4096,
            ),
        ] = None,
        audio_url: Annotated[
            str | None,
            Field(
                description=(
                    "An http(s) URL of the audio, which MusicGPT fetches itself (this server never "
                    "downloads it). Give this or audio_file, not both."
                ),
                max_length=MAX_URL_LENGTH,
            ),
        ] = None,
        stems: Annotated[
            StemList,
            Field(
                description=(
                    "Which stems to separate, each named once. Omit or leave empty for MusicGPT's default "
                    f"set: {', '.join(DEFAULT_STEMS)}. Use 'instrumental' for a karaoke track, 'vocals' for "
                    "an a cappella. Every stem is described in the resource musicgpt://stems."
                ),
                json_schema_extra={"uniqueItems": True},
            ),
        ] = [],  # noqa: B006 - pydantic copies defaults; the schema needs a literal default
        preprocessing_options: Annotated[
            PreprocessingList,
            Field(
                description=(
                    "Clean-up applied before separation, each named once: Denoise (background noise), "
                    "Deecho (echo), Dereverb (reverb). Usually none; use them for live or home recordings."
                ),
                json_schema_extra={"uniqueItems": True},
            ),
        ] = [],  # noqa: B006
        webhook_url: Annotated[
            str | None,
            Field(
                description=(
                    "Optional http(s) URL that MusicGPT will POST the result to when the job finishes. "
                    "Only set it when the user gives one."
                ),
                max_length=MAX_URL_LENGTH,
            ),
        ] = None,
        client_roots: RootsForAudioFile = None,
    ) -> Annotated[CallToolResult, ExtractionSubmitted]:
        state = ctx.request_context.lifespan_context
        file_arg = audio_file.strip() if audio_file and audio_file.strip() else None
        url_arg = audio_url.strip() if audio_url and audio_url.strip() else None
        if file_arg and url_arg:
            raise ToolError("Give either audio_file or audio_url, not both. Nothing was submitted.")
        if not file_arg and not url_arg:
            raise ToolError(
                "Give the audio to split: audio_file (an absolute local path such as ~/Music/song.mp3) or "
                "audio_url (an http(s) URL). Nothing was submitted."
            )
        if url_arg:
            _check_url("audio_url", url_arg)
        hook = webhook_url.strip() if webhook_url and webhook_url.strip() else None
        if hook:
            _check_url("webhook_url", hook)
        client, settings = state.require()
        part = None
        if file_arg:
            try:
                part = await anyio.to_thread.run_sync(
                    check_audio_file, file_arg, _allowed(settings, client_roots), settings.max_upload_bytes
                )
            except FileRefused as exc:
                raise ToolError(f"{exc} Nothing was submitted.") from None
        request = ExtractionRequest(
            stems=list(stems),
            preprocessing_options=list(preprocessing_options),
            audio_url=url_arg,
            audio_file=part,
            webhook_url=hook,
        )
        try:
            reply = await client.submit_extraction(request, _upload_progress(ctx, part.size) if part else None)
        except MusicGPTError as exc:
            raise ToolError(str(exc)) from None
        result = ExtractionSubmitted(
            task_id=reply.task_id,
            conversion_id=reply.conversion_id,
            eta=reply.eta,
            credit_estimate=reply.credit_estimate,
            stems=list(stems) or list(DEFAULT_STEMS),
            preprocessing_options=list(preprocessing_options),
            source=part.filename if part else (url_arg or ""),
            source_type="file" if part else "url",
        )
        state.remember(reply.task_id, Submitted(EtaHint(time.monotonic(), reply.eta), result.source))
        return _result(summaries.submitted(result), result)

    @server.tool(
        description=GET_EXTRACTION_DESCRIPTION,
        **_presentation("Check or wait for a stem extraction", read_only=True, idempotent=True),
    )
    async def get_extraction(
        ctx: Context[AppState],
        task_id: TaskId,
        wait_seconds: Annotated[
            int,
            Field(
                description=(
                    "How long to wait for the job to finish, in seconds. 0 (the default) just looks. Waits "
                    "are capped by the server (50 s unless configured otherwise) so the call returns before "
                    "hosts time out; call again to keep waiting."
                ),
                ge=0,
                le=3600,
            ),
        ] = 0,
    ) -> Annotated[CallToolResult, ExtractionStatus]:
        state = ctx.request_context.lifespan_context
        client, settings = state.require()
        wait = min(wait_seconds, settings.max_wait)
        remembered = state.jobs.get(task_id)

        async def report(progress: float, total: float, message: str) -> None:
            await ctx.report_progress(progress, total, message)

        try:
            status, waited = await wait_for_job(client, task_id, wait, remembered.hint if remembered else None, report)
        except MusicGPTError as exc:
            raise ToolError(str(exc)) from None
        result = summaries.status_model(task_id, status, waited)
        eta_left = remembered.hint.remaining(time.monotonic()) if remembered else None
        text = summaries.status(result, eta_left, wait_seconds, wait)
        return _result(text, result)

    @server.tool(
        description=DOWNLOAD_STEMS_DESCRIPTION,
        **_presentation("Download extracted stems", read_only=False, idempotent=True),
    )
    async def download_stems(
        ctx: Context[AppState],
        task_id: TaskId,
        stems: Annotated[
            StemList | None,
            Field(
                description="Which stems to save, each named once. Omit to save every stem the job produced.",
                json_schema_extra={"uniqueItems": True},
            ),
        ] = None,
        format: Annotated[
            Literal["mp3", "wav"],
            Field(description="mp3 (smaller, the default) or wav (lossless, for editing and production)."),
        ] = "mp3",
        output_dir: Annotated[
            str | None,
            Field(
                description=(
                    "Folder to save into. Omit it unless the user names a folder: by default each job gets "
                    "its own folder under the user's MusicGPT output folder, which output_dir must lie inside."
                ),
                max_length=4096,
            ),
        ] = None,
        client_roots: RootsForOutputDir = None,
    ) -> Annotated[CallToolResult, StemsDownloaded]:
        state = ctx.request_context.lifespan_context
        client, settings = state.require()
        remembered = state.jobs.get(task_id)
        # Saving is allowed into the output folder, and into folders the user listed or the client
        # offered as roots, but never into the whole home folder just because reading falls back to it.
        extra = _allowed(settings, client_roots)
        also = extra.dirs if extra.origin != "your home folder" else ()
        try:
            directory = resolve_output_dir(
                output_dir,
                settings.output_dir,
                folder_name(remembered.source if remembered else None, task_id),
                also_allowed=also,
            )
        except OutputRefused as exc:
            raise ToolError(f"{exc} Nothing was downloaded.") from None
        try:
            status = await client.get_status(task_id)
        except MusicGPTError as exc:
            raise ToolError(str(exc)) from None
        if status.failed:
            reason = f": {status.status_message}" if status.status_message else ""
            raise ToolError(f"Extraction {task_id} {status.status}{reason}. It produced no stems to download.")
        if not status.done:
            raise ToolError(
                f"Extraction {task_id} is not finished yet (status {status.status}). Call get_extraction with "
                f"task_id={task_id!r} and wait_seconds={settings.max_wait} to wait for it, then download_stems again."
            )
        urls = status.mp3 if format == "mp3" else status.wav
        jobs, skipped, missing = plan(urls, stems)
        if missing:
            available = ", ".join(sorted(k for k in urls if k in STEM_DESCRIPTIONS)) or "none"
            raise ToolError(
                f"Extraction {task_id} has no {format} file for {', '.join(missing)}. Stems available as "
                f"{format}: {available}. Nothing was downloaded."
            )
        if not jobs:
            raise ToolError(
                f"Extraction {task_id} finished, but MusicGPT listed no {format} stems that can be downloaded"
                + (f" ({'; '.join(f'{s.stem}: {s.reason}' for s in skipped)})" if skipped else "")
                + (". Try format='wav'." if format == "mp3" and status.wav else ".")
            )

        async def on_bytes(total: int) -> None:
            await ctx.report_progress(total, None, f"downloaded {summaries.size(total)}")

        try:
            saved, failed = await save_stems(
                client, jobs, format, directory, max_bytes=settings.max_download_bytes, on_bytes=on_bytes
            )
        except OSError as exc:
            raise ToolError(
                f"Could not write to {directory}: {exc.strerror or type(exc).__name__}. Check that the folder is "
                "writable and the disk has space, or set MUSICGPT_MCP_OUTPUT_DIR to another folder."
            ) from None
        skipped += failed
        if not saved:
            reasons = "; ".join(f"{s.stem}: {s.reason}" for s in skipped)
            raise ToolError(f"No stems could be saved for extraction {task_id}. {reasons}")
        result = StemsDownloaded(
            task_id=task_id,
            directory=str(directory),
            files=[
                SavedFile(
                    stem=s.stem, path=str(s.path), format=format, bytes=s.bytes, already_present=s.already_present
                )
                for s in saved
            ],
            skipped=[SkippedStem(stem=s.stem, reason=s.reason) for s in skipped],
        )
        links = [
            ResourceLink(
                type="resource_link",
                uri=Path(f.path).as_uri(),
                name=Path(f.path).name,
                title=f"{f.stem} stem ({format})",
                mime_type=AUDIO_MIME[format],
                size=f.bytes,
            )
            for f in result.files
        ]
        return _result(summaries.downloaded(result), result, *links)

    @server.resource(
        "musicgpt://stems",
        name="stems",
        title="MusicGPT stems and preprocessing options",
        description="Every stem MusicGPT can separate, with what it holds, and the preprocessing options.",
        mime_type="application/json",
    )
    def stems_catalog() -> str:
        return json.dumps(catalog_json(), indent=2)

    @server.resource(
        "musicgpt://extractions/{task_id}",
        name="extraction",
        title="A stem extraction job",
        description="The status of a MusicGPT extraction job, with stem URLs once it has finished (JSON).",
        mime_type="application/json",
    )
    async def extraction_resource(task_id: str, ctx: Context[AppState]) -> str:
        try:
            client, _ = ctx.request_context.lifespan_context.require()
        except ToolError as exc:
            raise ResourceError(str(exc)) from None
        if not re.fullmatch(contract.TASK_ID_PATTERN, task_id):
            raise ResourceError(f"{task_id[:100]!r} is not a task ID; use the task_id extract_stems returned.")
        try:
            status = await client.get_status(task_id)
        except MusicGPTError as exc:
            raise ResourceError(str(exc)) from None
        return summaries.status_model(task_id, status, 0.0).model_dump_json(indent=2)

    prompts.register(server)
    return server


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


def _presentation(title: str, *, read_only: bool, idempotent: bool) -> dict[str, Any]:
    """Title and annotations of a tool. None of ours deletes anything; all of them talk to MusicGPT."""
    return {
        "title": title,
        "annotations": ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=False,
            idempotent_hint=idempotent,
            open_world_hint=True,
        ),
    }


def _result(text: str, model: BaseModel, *blocks: ContentBlock) -> CallToolResult:
    """A short summary for the model first, then any extra blocks; the model itself as structured output."""
    return CallToolResult(
        content=[TextContent(type="text", text=text), *blocks], structured_content=model.model_dump(mode="json")
    )


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ToolError(f"{name} must be an http:// or https:// URL; got {url[:100]!r}. Nothing was submitted.")
    if parts.username is not None or parts.password is not None:
        raise ToolError(
            f"{name} must not carry a user name or password (user:pass@host); use a URL without them. "
            "Nothing was submitted."
        )
    if any(ord(ch) < 0x21 for ch in url):
        raise ToolError(f"{name} contains spaces or control characters; encode them. Nothing was submitted.")


__all__ = ["AppState", "create_server"]
