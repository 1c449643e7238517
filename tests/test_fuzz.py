"""Property: whatever arguments a model sends, every call ends in a result or a readable ToolError.

The SDK's bare "Error executing tool <name>" means an exception escaped a tool unhandled; it must
never appear. The server must still answer afterwards. CI runs a short profile; set
MUSICGPT_MCP_FUZZ_EXAMPLES (e.g. 2000) for a longer run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from musicgpt_mcp.catalog import PREPROCESSING_OPTIONS, STEMS
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.server import create_server

from .conftest import SECRET_KEY, make_settings, wav_bytes

EXAMPLES = int(os.environ.get("MUSICGPT_MCP_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES <= 250,  # the CI profile is repeatable; a long run explores
)

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
stem_lists = st.lists(st.sampled_from(STEMS) | st.text(max_size=12), max_size=6)
urls = st.sampled_from(
    [
        "https://example.com/a.mp3",
        "http://127.0.0.1:1/x",
        "file:///etc/passwd",
        "https://u:p@h/x",
        "javascript:alert(1)",
        "",
        " ",
        "https://" + "a" * 3000,
        "https://ex ample.com/\n",
        "ftp://h/x",
        "//h/x",
    ]
) | st.text(max_size=40)


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BlockingPortal, Client, Sandbox, Path]]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "song.wav").write_bytes(wav_bytes())
    (root / "notes.mp3").write_bytes(b"not audio at all")
    with Sandbox(api_key=SECRET_KEY, eta=0) as sandbox, start_blocking_portal() as portal:
        server = create_server(
            make_settings(sandbox, allowed_dirs=(root,), output_dir=root / "out", max_wait=0, read_timeout=2.0)
        )
        # The portal runs the client's whole life in one task, as anyio's cancel scopes require.
        with portal.wrap_async_context_manager(Client(server)) as client:
            yield portal, client, sandbox, root


def paths(root: Path) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            str(root / "song.wav"),
            str(root / "notes.mp3"),
            str(root),
            str(root / "missing.wav"),
            "/dev/zero",
            "/etc/passwd",
            "~",
            "~/../../etc/passwd",
            "relative.mp3",
            "",
            "\0",
            str(root / ".." / "x.wav"),
            "~nobody/x",
        ]
    ) | st.text(max_size=40)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy | json_values


def check(portal: BlockingPortal, client: Client, name: str, args: dict[str, Any]) -> None:
    result = portal.call(client.call_tool, name, args)
    text = "".join(getattr(block, "text", "") for block in result.content)
    assert text.strip() != f"Error executing tool {name}", f"unhandled exception for {args!r}"
    if result.is_error:
        assert text.startswith(f"Error executing tool {name}: ")
        assert len(text) > len(f"Error executing tool {name}: ") + 10
    else:
        assert result.structured_content is not None
    assert SECRET_KEY not in text


def drop_none(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v is not None}


def test_fuzz_extract_stems(fuzz_env: tuple[BlockingPortal, Client, Sandbox, Path]) -> None:
    portal, client, _, root = fuzz_env

    # Mostly one valid source, so the checks behind the source check get exercised too.
    good_sources = st.sampled_from([{"audio_file": str(root / "song.wav")}, {"audio_url": "https://example.com/a.mp3"}])
    sources = st.one_of(
        good_sources,
        good_sources,
        st.fixed_dictionaries({"audio_file": optional(paths(root))}),
        st.fixed_dictionaries({"audio_url": optional(urls)}),
        st.fixed_dictionaries({}, optional={"audio_file": optional(paths(root)), "audio_url": optional(urls)}),
    )
    # Each field is usually valid, so a hostile value in one field is not masked by another's.
    good_stems = st.lists(st.sampled_from(STEMS), unique=True, max_size=4)
    good_options = st.lists(st.sampled_from(PREPROCESSING_OPTIONS), unique=True)
    rest = st.fixed_dictionaries(
        {},
        optional={
            "stems": st.one_of(good_stems, good_stems, good_stems, optional(stem_lists)),
            "preprocessing_options": st.one_of(good_options, good_options, optional(st.lists(st.text(max_size=9)))),
            "webhook_url": urls,
        },
    )

    @FUZZ
    @given(sources, rest, st.none() | st.none() | st.none() | json_values)
    def run(source: dict[str, Any], others: dict[str, Any], unexpected: Any) -> None:
        extra = {"unexpected": unexpected} if unexpected is not None else {}
        check(portal, client, "extract_stems", drop_none({**source, **others, **extra}))

    run()
    assert portal.call(client.list_tools).tools


def test_fuzz_get_extraction_and_download(fuzz_env: tuple[BlockingPortal, Client, Sandbox, Path]) -> None:
    portal, client, _, root = fuzz_env
    submitted = portal.call(
        client.call_tool, "extract_stems", {"audio_file": str(root / "song.wav"), "stems": ["vocals"]}
    )
    task_id = submitted.structured_content["task_id"]  # type: ignore[index]
    task_ids = (
        st.sampled_from([task_id, "missing-task", "", "../../x", "a" * 300, "é"]) | st.text(max_size=20) | json_values
    )

    @FUZZ
    @given(
        st.sampled_from(["get_extraction", "download_stems"]),
        st.fixed_dictionaries(
            {"task_id": task_ids},
            optional={
                "wait_seconds": st.integers(-5, 10**6) | json_values,
                "stems": optional(stem_lists),
                "format": st.sampled_from(["mp3", "wav", "flac", "", "MP3"]) | json_values,
                "output_dir": optional(paths(root)),
            },
        ),
    )
    def run(tool: str, args: dict[str, Any]) -> None:
        check(portal, client, tool, drop_none(args))

    run()
    again = portal.call(client.call_tool, "get_extraction", {"task_id": task_id})
    assert not again.is_error
