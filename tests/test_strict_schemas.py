"""Every tool schema compiles in a strict validator: the real Ajv 8 (JSON Schema 2020-12, `strict: true`,
ajv-formats) under the pinned Node, as strict Node-based hosts and agent frameworks run it."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from mcp.types import Tool
from pydantic import SecretStr

from musicgpt_mcp.config import Settings

from .conftest import REPO, connect, renders_apps, require_node_tools

pytestmark = pytest.mark.anyio

AJV_STRICT = REPO / "tests" / "node" / "ajv_strict.mjs"
OFFLINE = Settings(api_key=SecretStr("unused"), base_url="http://127.0.0.1:9")


def ajv_strict(schemas: list[tuple[str, Any]]) -> dict[str, list[str]]:
    """Compile each (name, schema) with Ajv; the errors and warnings of each, by name."""
    node = require_node_tools() / "node"
    items = [{"name": name, "schema": schema} for name, schema in schemas]
    proc = subprocess.run(
        [str(node), str(AJV_STRICT)], input=json.dumps(items), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [r["name"] for r in report] == [name for name, _ in schemas]
    return {r["name"]: r["errors"] + r["warnings"] for r in report}


async def listed_tools() -> list[Tool]:
    """Every tool exactly as the server lists it (app-only ones too), in both protocol eras."""
    tools: dict[str, Tool] = {}
    for mode in ("auto", "legacy"):
        async with connect(OFFLINE, mode=mode, **renders_apps()) as client:
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor)
                for tool in page.tools:
                    previous = tools.setdefault(tool.name, tool)
                    assert previous.model_dump() == tool.model_dump(), f"{tool.name} differs between eras"
                cursor = page.next_cursor
                if cursor is None:
                    break
    return list(tools.values())


async def test_every_tool_schema_compiles_in_ajv_strict_mode() -> None:
    tools = await listed_tools()
    assert {"extract_stems", "get_extraction", "download_stems"} <= {t.name for t in tools}
    schemas: list[tuple[str, Any]] = []
    for tool in tools:
        wire = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
        schemas.append((f"{tool.name} inputSchema", wire["inputSchema"]))
        if "outputSchema" in wire:
            schemas.append((f"{tool.name} outputSchema", wire["outputSchema"]))
    problems = {name: found for name, found in ajv_strict(schemas).items() if found}
    assert problems == {}


def test_the_check_catches_a_keyword_beside_its_type() -> None:
    """The harness itself: the mistake issue #14 found (uniqueItems beside anyOf, not in the array branch)
    is refused with Ajv's own message, and the right shape passes."""
    items = {"type": "string", "enum": ["vocals", "drums"]}
    wrong = {
        "type": "object",
        "properties": {"stems": {"anyOf": [{"type": "array", "items": items}, {"type": "null"}], "uniqueItems": True}},
    }
    right = {
        "type": "object",
        "properties": {"stems": {"anyOf": [{"type": "array", "items": items, "uniqueItems": True}, {"type": "null"}]}},
    }
    report = ajv_strict([("wrong", wrong), ("right", right)])
    assert report["wrong"] == [
        'strict mode: missing type "array" for keyword "uniqueItems" at "#/properties/stems" (strictTypes)'
    ]
    assert report["right"] == []
