"""What a model sees when it lists the tools and resources."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from musicgpt_mcp.config import Settings

from .conftest import connect

pytestmark = pytest.mark.anyio

# The spec, spelled out independently of the catalog so a typo there fails here.
MUSICGPT_STEMS = [
    "vocals", "instrumental", "male_vocal", "female_vocal", "lead_vocal", "back_vocal", "bass", "drums",
    "guitar", "piano", "keys", "strings", "winds", "rhythm_guitar", "solo_guitar", "acoustic_guitar",
    "electric_guitar", "kick_drum", "snare_drum", "toms", "hi_hat", "ride", "crash",
]  # fmt: skip
MUSICGPT_PREPROCESSING = ["Denoise", "Deecho", "Dereverb"]

OFFLINE = Settings(api_key=SecretStr("unused"), base_url="http://127.0.0.1:9")


async def _tool(name: str) -> dict[str, object]:
    async with connect(OFFLINE) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    return tools[name].model_dump(mode="json", by_alias=True, exclude_none=True)


async def test_extract_stems_input_schema_mirrors_musicgpt() -> None:
    tool = await _tool("extract_stems")
    schema = tool["inputSchema"]
    assert isinstance(schema, dict)
    props = schema["properties"]
    assert set(props) == {
        "audio_file",
        "audio_url",
        "stems",
        "preprocessing_options",
        "webhook_url",
        "force_new",
        "file",
    }
    # ChatGPT fills `file` with an attached file (tool _meta "openai/fileParams"); a plain object, for the budget.
    assert props["file"]["type"] == ["object", "null"] and "audio_url" in props["file"]["description"]
    assert props["force_new"]["type"] == "boolean" and props["force_new"]["default"] is False
    assert "credits again" in props["force_new"]["description"]
    assert schema.get("required", []) == []
    assert props["stems"]["type"] == "array"
    assert props["stems"]["items"]["enum"] == MUSICGPT_STEMS
    assert props["stems"]["uniqueItems"] is True
    assert props["stems"]["default"] == []
    assert props["preprocessing_options"]["items"]["enum"] == MUSICGPT_PREPROCESSING
    assert props["preprocessing_options"]["uniqueItems"] is True
    assert props["preprocessing_options"]["default"] == []
    for name, prop in props.items():
        assert len(prop.get("description", "")) > 40, f"{name} needs a description written for a model"
    # The default band is named where the model reads about omitting stems.
    assert "drums, bass, piano, guitar" in props["stems"]["description"]


async def test_extract_stems_description_output_schema_and_annotations() -> None:
    tool = await _tool("extract_stems")
    assert tool["title"] == "Extract stems from a song"
    description = str(tool["description"])
    assert "credits" in description and "task_id" in description
    assert tool["annotations"] == {
        "title": "Extract stems from a song",
        "readOnlyHint": False,
        "destructiveHint": False,
        "idempotentHint": False,
        "openWorldHint": True,
    }
    out = tool["outputSchema"]
    assert isinstance(out, dict)
    assert out["type"] == "object"
    assert set(out["required"]) >= {
        "task_id",
        "conversion_id",
        "eta",
        "credit_estimate",
        "stems",
        "preprocessing_options",
    }
    assert out["properties"]["eta"]["type"] == "integer"
    assert out["properties"]["stems"]["items"]["enum"] == MUSICGPT_STEMS


async def test_stems_resource_lists_the_catalog() -> None:
    async with connect(OFFLINE) as client:
        resources = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert resources["musicgpt://stems"].mime_type == "application/json"
        read = await client.read_resource("musicgpt://stems")
    data = json.loads(read.contents[0].text)  # type: ignore[union-attr]
    assert [s["name"] for s in data["stems"]] == MUSICGPT_STEMS
    assert all(len(s["description"]) > 5 for s in data["stems"])
    assert [p["name"] for p in data["preprocessing_options"]] == MUSICGPT_PREPROCESSING
    assert data["default_stems"] == ["drums", "bass", "piano", "guitar"]


async def test_invalid_arguments_are_refused_by_the_schema() -> None:
    async with connect(OFFLINE) as client:
        bad_stem = await client.call_tool("extract_stems", {"audio_url": "https://a.b/c.mp3", "stems": ["vocal"]})
        twice = await client.call_tool("extract_stems", {"audio_url": "https://a.b/c.mp3", "stems": ["bass", "bass"]})
        bad_option = await client.call_tool(
            "extract_stems", {"audio_url": "https://a.b/c.mp3", "preprocessing_options": ["denoize"]}
        )
    for result in (bad_stem, twice, bad_option):
        assert result.is_error
    assert "stems" in bad_stem.content[0].text  # type: ignore[union-attr]
    assert "listed twice" in twice.content[0].text  # type: ignore[union-attr]
    assert "preprocessing_options" in bad_option.content[0].text  # type: ignore[union-attr]


async def test_download_stems_optional_list_is_unique_inside_its_array_branch() -> None:
    """`uniqueItems` belongs to the array, not beside `anyOf` (strict validators refuse that: issue #14;
    tests/test_strict_schemas.py compiles every schema with Ajv itself)."""
    tool = await _tool("download_stems")
    stems = tool["inputSchema"]["properties"]["stems"]  # type: ignore[index]
    assert "uniqueItems" not in stems
    array, null = stems["anyOf"]
    assert array["type"] == "array" and array["uniqueItems"] is True
    assert array["items"]["enum"] == MUSICGPT_STEMS
    assert null == {"type": "null"}
    async with connect(OFFLINE) as client:
        twice = await client.call_tool("download_stems", {"task_id": "t-1", "stems": ["bass", "bass"]})
    assert twice.is_error
    assert "listed twice" in twice.content[0].text  # type: ignore[union-attr]


# What every host sends the model with every message, per tool (issue #14). benchmarks/run.py reports
# the same figure ("tool schemas sent to the model"); this holds it to the budget.
SCHEMA_BUDGET = 1536


async def test_model_visible_tools_fit_the_schema_budget() -> None:
    async with connect(OFFLINE) as client:
        listed = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in (await client.list_tools()).tools
        ]
    # MCP Apps tools whose visibility is only ["app"] are hidden from the model by hosts.
    visible = [t for t in listed if t.get("_meta", {}).get("ui", {}).get("visibility") != ["app"]]
    assert {"extract_stems", "get_extraction", "download_stems"} <= {t["name"] for t in visible}
    sizes = {
        t["name"]: len(
            json.dumps(
                {"name": t["name"], "description": t.get("description", ""), "input_schema": t["inputSchema"]},
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode()
        )
        for t in visible
    }
    average = sum(sizes.values()) / len(sizes)
    assert average <= SCHEMA_BUDGET, f"{average:.0f} bytes per tool on average: {sizes}"
