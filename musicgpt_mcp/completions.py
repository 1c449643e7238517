"""Arguments a person types from a fixed set of values: suggestions while typing (`completion/complete`),
forgiving matching, and the closest values when what was typed is not one of them."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, Completion, CompletionArgument, CompletionContext, PromptReference
from mcp.types import ResourceTemplateReference as TemplateReference

# The spec's limit on values in one completion answer.
MAX_VALUES = 100

# prompt name -> argument name -> the values it accepts, in the order to offer them.
PromptChoices = Mapping[str, Mapping[str, Sequence[str]]]


def _key(text: str) -> str:
    """How a value is compared: case, spaces and hyphens do not matter ("Hi-Hat " is hi_hat)."""
    return "_".join(text.lower().replace("-", " ").replace("_", " ").split())


def suggest(values: Sequence[str], typed: str) -> list[str]:
    """The values starting with what was typed, then those containing it ("dr": drums, then kick_drum,
    snare_drum), each group in the set's own order. Everything for an empty string."""
    key = _key(typed)
    starts = [v for v in values if _key(v).startswith(key)]
    inside = [v for v in values if key in _key(v) and v not in starts]
    return starts + inside


def match(values: Sequence[str], typed: str) -> str | None:
    """The value meant, when what was typed differs from it only in case, spaces or hyphens."""
    key = _key(typed)
    return next((v for v in values if _key(v) == key), None)


def closest(values: Sequence[str], typed: str, n: int = 5) -> list[str]:
    """Up to `n` values the person may have meant: those containing what was typed, then look-alikes."""
    key = _key(typed)
    if not key:
        return []
    by_key = {_key(v): v for v in values}
    alike = [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=n, cutoff=0.6)]
    return list(dict.fromkeys(suggest(values, typed) + alike))[:n]


def register(server: MCPServer[Any], prompts: PromptChoices) -> None:
    """Answer `completion/complete` (and so advertise the `completions` capability) for prompt arguments
    with a fixed set of values; other arguments of known prompts get no suggestions."""

    async def complete(
        ref: PromptReference | TemplateReference, argument: CompletionArgument, context: CompletionContext | None
    ) -> Completion | None:
        if isinstance(ref, TemplateReference):
            return None
        listed = {p.name: p for p in await server.list_prompts()}
        prompt = listed.get(ref.name)
        if prompt is None:
            raise MCPError(INVALID_PARAMS, f"No prompt named {ref.name[:100]!r}; prompts/list names them.")
        if argument.name not in {a.name for a in prompt.arguments or ()}:
            raise MCPError(INVALID_PARAMS, f"Prompt {ref.name!r} has no argument {argument.name[:100]!r}.")
        values = prompts.get(ref.name, {}).get(argument.name)
        if values is None:
            return None
        found = suggest(values, argument.value)
        return Completion(values=found[:MAX_VALUES], total=len(found), has_more=len(found) > MAX_VALUES)

    # The SDK's decorator is untyped; the handler above is what it registers.
    server.completion()(complete)  # type: ignore[no-untyped-call]
