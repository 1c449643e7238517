"""The MCP surface: tool schemas and descriptions for a model, and errors it can act on.

Thin on purpose: MusicGPT calls live in `musicgpt`, file checks in `files`, the stem list in
`catalog`. This module translates between them and MCP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AfterValidator, BaseModel, Field

from . import __version__
from .catalog import DEFAULT_STEMS, Preprocessing, Stem, catalog_json
from .config import ConfigError, Settings
from .files import FileRefused, check_audio_file
from .musicgpt import ExtractionRequest, MusicGPTClient, MusicGPTError

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048

INSTRUCTIONS = (
    "Splits songs into stems (vocals, drums, bass, guitar, piano, and more) with MusicGPT. "
    "extract_stems submits a paid job and returns a task_id. The resource musicgpt://stems lists every "
    "stem with what it holds."
)

EXTRACT_STEMS_DESCRIPTION = """\
Split a song into separate stems (vocals, drums, bass, guitar, piano, ...) with MusicGPT.

Costs money: every call submits a paid job that spends MusicGPT credits from the user's account \
(the result's credit_estimate says about how many). Call it once per song, only when the user asked \
for stems, and do not call it again for the same song just because a call failed: read the error \
first, since some failures leave the job submitted.

Give exactly one of audio_file (a local path) or audio_url. The call returns at once with a task_id \
and an eta in seconds; the stems are not ready yet. Tell the user the job was submitted and keep the \
task_id: it identifies this job with MusicGPT."""


@dataclass
class AppState:
    client: MusicGPTClient | None
    config_error: str | None = None

    def require_client(self) -> MusicGPTClient:
        if self.client is None:
            raise ToolError(self.config_error or "The server is not configured.")
        return self.client


def _unique(values: list[Any]) -> list[Any]:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice; name each one once")
        seen.add(value)
    return values


StemList = Annotated[list[Stem], AfterValidator(_unique)]
PreprocessingList = Annotated[list[Preprocessing], AfterValidator(_unique)]


class ExtractionSubmitted(BaseModel):
    """What MusicGPT accepted."""

    task_id: str = Field(description="MusicGPT's task ID: the handle for checking on this job.")
    conversion_id: str | None = Field(description="MusicGPT's conversion ID for the same job, if it gave one.")
    eta: int = Field(description="Seconds until MusicGPT expects the stems to be ready; -1 when unknown.")
    credit_estimate: float | None = Field(
        description="MusicGPT credits this job is expected to cost; null when MusicGPT did not say."
    )
    stems: list[Stem] = Field(description="The stems requested (MusicGPT's default set when none were named).")
    preprocessing_options: list[Preprocessing] = Field(description="The preprocessing requested.")
    source: str = Field(description="The audio submitted: the local file's name, or the URL.")
    source_type: Literal["file", "url"] = Field(description="Whether a local file or a URL was submitted.")


def create_server(settings: Settings | None = None) -> MCPServer[AppState]:
    """The server. With `settings` None, configuration is read from the environment at start-up."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        try:
            resolved = settings if settings is not None else Settings.from_env()
        except ConfigError as exc:
            # Start anyway: a host shows a crashed server as a red dot and nothing else, whereas a
            # tool error tells the user what to fix.
            log.error("configuration error: %s", exc)
            yield AppState(client=None, config_error=f"The server's configuration is invalid: {exc}")
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
        try:
            yield AppState(client=client)
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
        title="Extract stems from a song",
        description=EXTRACT_STEMS_DESCRIPTION,
        annotations=ToolAnnotations(
            title="Extract stems from a song",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
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
        part = None
        if file_arg:
            try:
                part = check_audio_file(file_arg)
            except FileRefused as exc:
                raise ToolError(f"{exc} Nothing was submitted.") from None
        client = state.require_client()
        request = ExtractionRequest(
            stems=list(stems),
            preprocessing_options=list(preprocessing_options),
            audio_url=url_arg,
            audio_file=part,
            webhook_url=hook,
        )
        try:
            reply = await client.submit_extraction(request)
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
        return CallToolResult(
            content=[TextContent(type="text", text=_submitted_summary(result))],
            structured_content=result.model_dump(mode="json"),
        )

    @server.resource(
        "musicgpt://stems",
        name="stems",
        title="MusicGPT stems and preprocessing options",
        description="Every stem MusicGPT can separate, with what it holds, and the preprocessing options.",
        mime_type="application/json",
    )
    def stems_catalog() -> str:
        return json.dumps(catalog_json(), indent=2)

    return server


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


def _submitted_summary(result: ExtractionSubmitted) -> str:
    what = ", ".join(result.stems)
    wait = f"about {result.eta} s" if result.eta >= 0 else "an unknown time"
    cost = f"{result.credit_estimate:g} credits" if result.credit_estimate is not None else "cost not stated"
    extras = f" with {', '.join(result.preprocessing_options)}" if result.preprocessing_options else ""
    return (
        f"Submitted {result.source} to MusicGPT for stem extraction ({what}){extras}. "
        f"task_id: {result.task_id}. Expected wait: {wait}; estimated cost: {cost}. "
        "The stems are not ready yet; keep the task_id to check on the job."
    )


__all__ = ["AppState", "ExtractionSubmitted", "create_server"]
