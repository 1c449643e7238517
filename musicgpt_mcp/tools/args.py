"""What the tools share: argument types (each catalog list from the one catalog), the parameters the SDK fills
in itself (the `Call`, the client's roots), and how a result is shaped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final, TypeVar

from mcp.server.mcpserver import Context, ListRoots, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, ListRootsResult, TextContent
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, GetJsonSchemaHandler, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .. import completions
from ..call import Call, open_call
from ..catalog import PREPROCESSING_OPTIONS, STEMS
from ..errors import tool_errors
from ..files import AllowedDirs, allowed_dirs
from ..musicgpt import contract
from ..state import ServerState
from ..visible import shown


def _unique(values: list[Any]) -> list[Any]:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice; name each one once")
        seen.add(value)
    return values


class _UniqueItems:
    """Marks a list's own JSON Schema `uniqueItems`. On the list type, not on the parameter's Field:
    there `json_schema_extra` lands beside `anyOf` when the list is optional (`UniqueList[X] | None`),
    which strict validators refuse (Ajv: 'missing type "array" for keyword "uniqueItems"')."""

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["uniqueItems"] = True
        return schema


T = TypeVar("T")
# A list whose items are each named once: refused with a clear message, and `uniqueItems` in the
# schema's array (also inside `anyOf` when optional). Every list argument of a tool uses this.
UniqueList = Annotated[list[T], AfterValidator(_unique), _UniqueItems()]


def _canonical(choices: tuple[str, ...]) -> BeforeValidator:
    """A name as the catalog spells it when only case, spaces or hyphens differ ("Vocals", "hi-hat")."""

    def canonical(value: object) -> object:
        return (completions.match(choices, value) or value) if isinstance(value, str) else value

    return BeforeValidator(canonical)


# A catalog name: the schema offers exactly the catalog's names; validation takes a near spelling as the name it
# means ("Vocals", "hi-hat"), and leaves any other string to the tool (`catalog_names`), which answers in words
# with the closest names instead of pydantic's dump.
StemName = Annotated[str, _canonical(STEMS), WithJsonSchema({"enum": list(STEMS), "type": "string"})]
PreprocessingName = Annotated[
    str, _canonical(PREPROCESSING_OPTIONS), WithJsonSchema({"enum": list(PREPROCESSING_OPTIONS), "type": "string"})
]
StemList = UniqueList[StemName]
PreprocessingList = UniqueList[PreprocessingName]


def catalog_names(field: str, given: Sequence[str], choices: tuple[T, ...], what: str) -> list[T]:
    """`given` as catalog names, or a ToolError naming the first unknown one and the closest to it."""
    for name in given:
        if name not in choices:
            near = completions.closest([str(c) for c in choices], name, 3)
            hint = f" Did you mean {' or '.join(near)}?" if near else ""
            raise ToolError(
                f"{field}: {shown(name[:60])!r} is not {what}.{hint} The {what}s are: {', '.join(map(str, choices))}. "
                "Nothing was done; call again with names from that list."
            )
    return [c for name in given for c in choices if c == name]


# The settings each kind of free tool uses.
LEDGER_SETTINGS: Final = frozenset({"MUSICGPT_MCP_STATE_DIR", "MUSICGPT_MCP_DATABASE_URL", "MUSICGPT_MCP_AUTH"})
STATUS_SETTINGS: Final = LEDGER_SETTINGS | {
    "MUSICGPT_API_KEY",
    "MUSICGPT_BASE_URL",
    "MUSICGPT_MCP_MAX_WAIT",
    "MUSICGPT_MCP_STATUS_CALLS_PER_MINUTE",
    "MUSICGPT_MCP_MAX_DOWNLOAD_MB",
    "MUSICGPT_MCP_STORAGE_HOSTS",
}
DOWNLOAD_SETTINGS: Final = STATUS_SETTINGS | {"MUSICGPT_MCP_OUTPUT_DIR", "MUSICGPT_MCP_ALLOWED_DIRS"}


async def _open_call(ctx: Context[ServerState]) -> Call:
    return open_call(ctx)


async def _open_status_call(ctx: Context[ServerState]) -> Call:
    return open_call(ctx, STATUS_SETTINGS)


async def _open_download_call(ctx: Context[ServerState]) -> Call:
    return open_call(ctx, DOWNLOAD_SETTINGS)


async def _open_ledger_call(ctx: Context[ServerState]) -> Call:
    return open_call(ctx, LEDGER_SETTINGS)


TaskId = Annotated[
    str,
    Field(
        description="The task_id that extract_stems returned.",
        min_length=1,
        max_length=200,
        pattern=contract.TASK_ID_PATTERN,
    ),
]


# The call being served (call.py), made by the SDK for each tool that takes one; a failure to make it (an unusable
# setting the tool needs, no sign-in) is a tool error like any other. The paid tool needs every setting; the free
# ones only theirs, so a bad MUSICGPT_MCP_CONFIRM, say, leaves them working (and they mention it).
CurrentCall = Annotated[Call, Resolve(tool_errors(_open_call))]
StatusCall = Annotated[Call, Resolve(tool_errors(_open_status_call))]
DownloadCall = Annotated[Call, Resolve(tool_errors(_open_download_call))]
LedgerCall = Annotated[Call, Resolve(tool_errors(_open_ledger_call))]


def _client_roots(ctx: Context[ServerState], path: str | None) -> ListRoots | None:
    """Ask the client for its roots, only when a path is to be checked against them: not when the
    user configured folders, not when the client offers none, not for URL-only calls, and never over
    HTTP: a remote client's roots name folders on the client's machine, not on this server's, so there
    files and folders come from the operator's settings alone."""
    state = ctx.request_context.lifespan_context
    settings = state.settings
    if state.transport != "stdio" or not (path and path.strip()):
        return None
    if settings is not None and settings.allowed_dirs is not None:
        return None
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.roots is None:
        return None
    return ListRoots()


async def _roots_for_audio_file(ctx: Context[ServerState], audio_file: str | None = None) -> ListRoots | None:
    return _client_roots(ctx, audio_file)


async def _roots_for_output_dir(ctx: Context[ServerState], output_dir: str | None = None) -> ListRoots | None:
    return _client_roots(ctx, output_dir)


RootsForAudioFile = Annotated[ListRootsResult | None, Resolve(_roots_for_audio_file)]
RootsForOutputDir = Annotated[ListRootsResult | None, Resolve(_roots_for_output_dir)]


def allowed(call: Call, roots: ListRootsResult | None) -> AllowedDirs:
    """The folders a path may name: the operator's, else (stdio only) the client's roots or the home folder."""
    offered = [str(r.uri) for r in roots.roots] if roots and call.state.transport == "stdio" else None
    return allowed_dirs(call.settings.allowed_dirs, offered)


def result(text: str, model: BaseModel, *blocks: ContentBlock) -> CallToolResult:
    """A short summary for the model first, then any extra blocks; the model itself as structured output."""
    return CallToolResult(
        content=[TextContent(type="text", text=text), *blocks], structured_content=model.model_dump(mode="json")
    )
