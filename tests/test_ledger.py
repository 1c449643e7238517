"""The job ledger through the protocol: no double charges, spending limits, the user's consent,
and memory across restarts. MusicGPT is the sandbox on loopback; every count of paid POSTs is what
the sandbox received."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult

from musicgpt_mcp.sandbox import Fault, Sandbox
from musicgpt_mcp.server import create_server

from .conftest import SECRET_KEY, connect, make_settings
from .test_status import text_of
from .test_stdio import server_params

pytestmark = pytest.mark.anyio


def posts(sandbox: Sandbox) -> int:
    """Paid submits MusicGPT received (complete requests only: a reset mid-upload is counted apart)."""
    return sum(1 for s in sandbox.state.submits() if s.complete)


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_same_file_under_another_name_is_reused(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    copy = tmp_path / "renamed copy.wav"
    shutil.copyfile(song, copy)
    async with connect(make_settings(sandbox)) as client:
        first = structured(await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]}))
        again = await client.call_tool("extract_stems", {"audio_file": str(copy), "stems": ["vocals"]})
    second = structured(again)
    assert posts(sandbox) == 1
    assert (first["reused"], second["reused"]) == (False, True)
    assert second["task_id"] == first["task_id"]
    assert second["submitted_at"] == first["submitted_at"]
    assert "no credits were spent" in text_of(again)
    assert "force_new=true" in text_of(again)


async def test_url_variants_and_stem_order_are_the_same_job(sandbox: Sandbox) -> None:
    async with connect(make_settings(sandbox)) as client:
        first = structured(
            await client.call_tool(
                "extract_stems",
                {"audio_url": "https://Example.COM:443/a/Song.mp3?x=1#top", "stems": ["vocals", "drums"]},
            )
        )
        second = structured(
            await client.call_tool(
                "extract_stems", {"audio_url": "https://example.com/a/Song.mp3?x=1", "stems": ["drums", "vocals"]}
            )
        )
        # A different path, query or stem set is a different job.
        other_path = structured(
            await client.call_tool("extract_stems", {"audio_url": "https://example.com/a/song.mp3?x=1"})
        )
        other_stems = structured(
            await client.call_tool("extract_stems", {"audio_url": "https://example.com/a/Song.mp3?x=1"})
        )
    assert second["reused"] is True and second["task_id"] == first["task_id"]
    assert other_path["reused"] is False and other_stems["reused"] is False
    assert posts(sandbox) == 3


async def test_empty_stems_and_the_default_set_are_the_same_job(sandbox: Sandbox) -> None:
    url = "https://example.com/default.mp3"
    async with connect(make_settings(sandbox)) as client:
        first = structured(await client.call_tool("extract_stems", {"audio_url": url}))
        second = structured(
            await client.call_tool("extract_stems", {"audio_url": url, "stems": ["guitar", "piano", "bass", "drums"]})
        )
    assert second["reused"] is True and second["task_id"] == first["task_id"]
    assert posts(sandbox) == 1


async def test_force_new_pays_again_and_later_calls_reuse_the_newest(sandbox: Sandbox, song: Path) -> None:
    args = {"audio_file": str(song), "stems": ["bass"]}
    async with connect(make_settings(sandbox)) as client:
        first = structured(await client.call_tool("extract_stems", args))
        forced = structured(await client.call_tool("extract_stems", {**args, "force_new": True}))
        later = structured(await client.call_tool("extract_stems", args))
    assert posts(sandbox) == 2
    assert forced["reused"] is False and forced["task_id"] != first["task_id"]
    assert later["reused"] is True and later["task_id"] == forced["task_id"]


async def test_reuse_window_and_failed_jobs(sandbox: Sandbox, song: Path) -> None:
    args = {"audio_file": str(song), "stems": ["piano"]}
    # 0.0005 h = 1.8 s: long enough to reuse at once, short enough to expire within the test.
    async with connect(make_settings(sandbox, reuse_hours=0.0005)) as client:
        first = structured(await client.call_tool("extract_stems", args))
        assert structured(await client.call_tool("extract_stems", args))["reused"] is True
        await anyio.sleep(2.0)
        expired = structured(await client.call_tool("extract_stems", args))
        assert expired["reused"] is False
        # A job seen FAILED is never returned again.
        sandbox.state.jobs[expired["task_id"]].fail_reason = "Audio could not be decoded"
        sandbox.state.jobs[expired["task_id"]].status_override = "FAILED"
        assert structured(await client.call_tool("get_extraction", {"task_id": expired["task_id"]}))["done"]
        after_failure = structured(await client.call_tool("extract_stems", args))
    assert after_failure["reused"] is False
    assert len({first["task_id"], expired["task_id"], after_failure["task_id"]}) == 3
    assert posts(sandbox) == 3


async def test_reuse_off(sandbox: Sandbox, song: Path) -> None:
    async with connect(make_settings(sandbox, reuse_hours=0)) as client:
        for _ in range(2):
            assert structured(await client.call_tool("extract_stems", {"audio_file": str(song)}))["reused"] is False
    assert posts(sandbox) == 2


async def test_concurrent_identical_calls_in_one_process_make_one_post(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.submit_delay = 0.5  # every call arrives while the first POST is in the air
    results: list[dict[str, Any]] = []
    async with connect(make_settings(sandbox)) as client:

        async def one() -> None:
            results.append(
                structured(await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["drums"]}))
            )

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(one)
    assert posts(sandbox) == 1
    assert len({r["task_id"] for r in results}) == 1
    assert sorted(r["reused"] for r in results) == [False] + [True] * 29


async def test_concurrent_identical_calls_in_two_processes_make_one_post(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.submit_delay = 1.0
    state_dir = tempfile.mkdtemp(prefix="musicgpt-mcp-shared-ledger-")
    env = {"MUSICGPT_API_KEY": SECRET_KEY, "MUSICGPT_BASE_URL": sandbox.base_url, "MUSICGPT_MCP_STATE_DIR": state_dir}
    results: list[dict[str, Any]] = []
    async with Client(server_params(**env)) as a, Client(server_params(**env)) as b:
        # Both processes are up and have listed their tools before the race starts.
        await a.list_tools()
        await b.list_tools()

        async def one(client: Client) -> None:
            results.append(
                structured(await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["toms"]}))
            )

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one, a)
                tg.start_soon(one, b)
    assert posts(sandbox) == 1
    assert len({r["task_id"] for r in results}) == 1
    assert sum(not r["reused"] for r in results) == 1


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        (Fault(status=500), "server error"),
        (Fault(status=200, body=b"<html>gateway</html>", content_type="text/html"), "HTML instead of JSON"),
        (Fault(action="reset"), "connection reset after the upload"),
    ],
)
async def test_unknown_outcome_blocks_an_identical_call_until_force_new(
    sandbox: Sandbox, song: Path, fault: Fault, why: str
) -> None:
    args = {"audio_file": str(song), "stems": ["vocals", "drums"]}
    sandbox.state.queue_fault("submit", fault)
    async with connect(make_settings(sandbox)) as client:
        first = await client.call_tool("extract_stems", args)
        assert first.is_error, why
        assert "may or may not" in text_of(first) or "probably not created" in text_of(first)
        sent = len(sandbox.state.submits())
        blocked = await client.call_tool("extract_stems", args)
        assert blocked.is_error
        assert len(sandbox.state.submits()) == sent  # nothing more reached MusicGPT
        text = text_of(blocked)
        assert "may already have been charged" in text and "force_new=true" in text and "dashboard" in text
        assert "Z (same audio" in text  # when it happened, in UTC
        forced = structured(await client.call_tool("extract_stems", {**args, "force_new": True}))
        listed = structured(await client.call_tool("list_extractions", {}))
    assert forced["reused"] is False
    assert len(sandbox.state.submits()) == sent + 1
    statuses = [e["status"] for e in listed["extractions"]]
    assert statuses == ["SUBMITTED", "OUTCOME_UNKNOWN"]


async def test_a_reply_that_breaks_the_parser_is_an_unknown_outcome(
    sandbox: Sandbox, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last line of defence on the submit path: whatever fails while reading MusicGPT's answer, the
    job may exist, so it is recorded as such and an identical call does not pay again."""
    from musicgpt_mcp.musicgpt import replies

    def broken(reply: object) -> object:
        raise ValueError("a parser bug")

    monkeypatch.setattr(replies, "parse_submit_reply", broken)
    args = {"audio_file": str(song), "stems": ["crash"]}
    async with connect(make_settings(sandbox)) as client:
        first = await client.call_tool("extract_stems", args)
        again = await client.call_tool("extract_stems", args)
    assert first.is_error and "may or may not have been submitted" in text_of(first)
    assert again.is_error and "may already have been charged" in text_of(again)
    assert len(sandbox.state.submits()) == 1


async def test_a_refused_submit_does_not_block_the_next_one(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.queue_fault("submit", Fault(status=402, body=b'{"success": false, "error": "Insufficient credits"}'))
    args = {"audio_file": str(song), "stems": ["keys"]}
    async with connect(make_settings(sandbox)) as client:
        refused = await client.call_tool("extract_stems", args)
        assert refused.is_error and "Nothing was charged" in text_of(refused)
        retried = structured(await client.call_tool("extract_stems", args))
        listed = structured(await client.call_tool("list_extractions", {}))
    assert retried["reused"] is False
    assert [e["task_id"] for e in listed["extractions"]] == [retried["task_id"]]


async def test_jobs_per_hour_limit(sandbox: Sandbox) -> None:
    async with connect(make_settings(sandbox, max_jobs_per_hour=2)) as client:
        for n in range(2):
            structured(await client.call_tool("extract_stems", {"audio_url": f"https://example.com/{n}.mp3"}))
        # A reused job costs nothing and counts nothing.
        reused = structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/0.mp3"}))
        third = await client.call_tool("extract_stems", {"audio_url": "https://example.com/2.mp3"})
    assert reused["reused"] is True
    assert third.is_error
    text = text_of(third)
    assert "2 paid jobs were submitted in the last hour" in text and "MUSICGPT_MCP_MAX_JOBS_PER_HOUR (2)" in text
    assert "Nothing was submitted" in text
    assert posts(sandbox) == 2


async def test_credit_limit_holds_across_servers_sharing_the_ledger(sandbox: Sandbox, tmp_path: Path) -> None:
    # The sandbox charges 0.5 credits a stem: two stems cost 1 credit. The first job counts the documented
    # assumption (1.5 a stem: 3 credits) until MusicGPT's estimate arrives; later ones the last cost seen.
    settings = make_settings(sandbox, state_dir=tmp_path / "state", max_credits_per_day=3.0)
    two_stems = ["bass", "drums"]
    async with connect(settings) as one, connect(settings) as two:
        for n, server in enumerate((one, two, one)):
            url = f"https://example.com/{n}.mp3"
            structured(await server.call_tool("extract_stems", {"audio_url": url, "stems": two_stems}))
        refused = await two.call_tool("extract_stems", {"audio_url": "https://example.com/b.mp3", "stems": two_stems})
    assert refused.is_error
    text = text_of(refused)
    assert "the jobs of the last 24 hours count 3 credits" in text
    assert "this job is estimated at up to 1 credit," in text
    assert "MUSICGPT_MCP_MAX_CREDITS_PER_DAY is 3" in text and "Nothing was submitted" in text
    assert posts(sandbox) == 3


def elicitation(action: str, content: dict[str, Any] | None = None) -> tuple[list[str], Any]:
    asked: list[str] = []

    async def callback(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    return asked, callback


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_consent_accepted(sandbox: Sandbox, song: Path, mode: str) -> None:
    asked, callback = elicitation("accept", {"submit": True})
    options: dict[str, Any] = {"elicitation_callback": callback}
    if mode == "legacy":
        options["mode"] = "legacy"
    async with connect(make_settings(sandbox), **options) as client:
        done = structured(
            await client.call_tool(
                "extract_stems", {"audio_file": str(song), "stems": ["vocals"], "preprocessing_options": ["Denoise"]}
            )
        )
        # A reused job is free: nobody is asked.
        again = structured(await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]}))
        # The second paid job quotes what the first cost.
        structured(
            await client.call_tool(
                "extract_stems",
                {"audio_url": "https://example.com/x.mp3", "stems": ["vocals"], "preprocessing_options": ["Denoise"]},
            )
        )
    assert done["reused"] is False and again["reused"] is False  # different options: a different job
    assert posts(sandbox) == 3
    assert len(asked) == 3
    first = asked[0]
    assert "paid stem extraction" in first and "My Song (demo).wav" in first and "KB" in first
    assert "Stems: vocals" in first and "Clean-up: Denoise" in first
    assert "MusicGPT states the cost when the job is accepted" in first
    assert "the last job with the same stems and options cost 0.75 credits" in asked[2]


async def test_reused_job_asks_nobody(sandbox: Sandbox, song: Path) -> None:
    asked, callback = elicitation("accept", {"submit": True})
    async with connect(make_settings(sandbox), elicitation_callback=callback) as client:
        structured(await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]}))
        assert structured(await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]}))[
            "reused"
        ]
    assert len(asked) == 1 and posts(sandbox) == 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(("action", "content"), [("decline", None), ("cancel", None), ("accept", {"submit": False})])
async def test_consent_declined(
    sandbox: Sandbox, song: Path, mode: str, action: str, content: dict[str, Any] | None
) -> None:
    asked, callback = elicitation(action, content)
    options: dict[str, Any] = {"elicitation_callback": callback}
    if mode == "legacy":
        options["mode"] = "legacy"
    async with connect(make_settings(sandbox), **options) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(song)})
        listed = structured(await client.call_tool("list_extractions", {}))
    assert result.is_error
    assert "nothing was submitted" in text_of(result).lower()
    assert len(asked) == 1
    assert posts(sandbox) == 0
    assert listed["extractions"] == []  # a declined call leaves nothing behind


async def test_confirm_always_refuses_without_a_way_to_ask(sandbox: Sandbox, song: Path) -> None:
    async with connect(make_settings(sandbox, confirm="always")) as client:
        result = await client.call_tool("extract_stems", {"audio_file": str(song)})
    assert result.is_error
    assert "MUSICGPT_MCP_CONFIRM" in text_of(result) and "Nothing was submitted" in text_of(result)
    assert posts(sandbox) == 0


async def test_confirm_auto_proceeds_without_a_way_to_ask(sandbox: Sandbox, song: Path) -> None:
    async with connect(make_settings(sandbox, confirm="auto")) as client:
        structured(await client.call_tool("extract_stems", {"audio_file": str(song)}))
    assert posts(sandbox) == 1


async def test_confirm_never_does_not_ask(sandbox: Sandbox, song: Path) -> None:
    asked, callback = elicitation("decline")
    async with connect(make_settings(sandbox, confirm="never"), elicitation_callback=callback) as client:
        structured(await client.call_tool("extract_stems", {"audio_file": str(song)}))
    assert asked == [] and posts(sandbox) == 1


async def test_confirm_always_asks_a_capable_client(sandbox: Sandbox, song: Path) -> None:
    asked, callback = elicitation("accept", {"submit": True})
    async with connect(make_settings(sandbox, confirm="always"), elicitation_callback=callback) as client:
        structured(await client.call_tool("extract_stems", {"audio_file": str(song)}))
    assert len(asked) == 1 and posts(sandbox) == 1


async def test_a_restarted_server_knows_the_job(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    sandbox.state.eta = 4
    state_dir = str(tmp_path / "state")
    out = tmp_path / "out"
    env = {
        "MUSICGPT_API_KEY": SECRET_KEY,
        "MUSICGPT_BASE_URL": sandbox.base_url,
        "MUSICGPT_MCP_STATE_DIR": state_dir,
        "MUSICGPT_MCP_OUTPUT_DIR": str(out),
        "MUSICGPT_MCP_STORAGE_HOSTS": sandbox.netloc,
    }
    async with Client(server_params(**env)) as first:
        task_id = structured(await first.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]}))[
            "task_id"
        ]
    # The host restarts the server: a new process, the same ledger.
    updates: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total))

    async with Client(server_params(**env)) as second:
        status = structured(
            await second.call_tool(
                "get_extraction", {"task_id": task_id, "wait_seconds": 20}, progress_callback=on_progress
            )
        )
        saved = structured(await second.call_tool("download_stems", {"task_id": task_id}))
        listed = structured(await second.call_tool("list_extractions", {}))
    assert status["succeeded"] is True
    # The poll schedule and progress come from the ETA the first process recorded: the total is that ETA.
    # (Without the ledger the total would be the 20 s wait window.)
    # (The total is the ETA plus a second of headroom, so the bar is full only when the job is done.)
    assert updates and updates[0][1] == 5 and all(total is not None and 5 <= total < 20 for _, total in updates)
    assert updates[-1][0] == updates[-1][1]
    assert saved["directory"] == str(out / f"My Song (demo) - {task_id[:8]}")
    [job] = listed["extractions"]
    assert job["status"] == "COMPLETED" and job["finished_at"] is not None
    assert job["saved_to"] == [saved["directory"]]
    assert job["credits"] == 0.5


async def test_list_extractions_filters_and_totals(sandbox: Sandbox, song: Path) -> None:
    sandbox.state.eta = 1
    async with connect(make_settings(sandbox)) as client:
        a = structured(await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]}))
        structured(
            await client.call_tool(
                "extract_stems", {"audio_url": "https://example.com/other_100%.mp3", "stems": ["bass", "drums"]}
            )
        )
        await client.call_tool("get_extraction", {"task_id": a["task_id"], "wait_seconds": 10})
        everything = structured(await client.call_tool("list_extractions", {}))
        completed = structured(await client.call_tool("list_extractions", {"status": "COMPLETED"}))
        # "%" and "_" are characters here, not wildcards: each matches only the URL that contains it.
        percent = structured(await client.call_tool("list_extractions", {"query": "%"}))
        underscore = structured(await client.call_tool("list_extractions", {"query": "_"}))
        by_name = structured(await client.call_tool("list_extractions", {"query": "my song"}))
        one = await client.call_tool("list_extractions", {"limit": 1})
        resource = await client.read_resource("musicgpt://extractions")
        filtered = await client.read_resource("musicgpt://extractions?status=SUBMITTED")
    assert [e["source"] for e in everything["extractions"]] == [
        "https://example.com/other_100%.mp3",
        "My Song (demo).wav",
    ]
    assert everything["credits_last_24_hours"] == 1.5 and everything["credits_last_30_days"] == 1.5
    assert [e["task_id"] for e in completed["extractions"]] == [a["task_id"]]
    assert [e["source"] for e in by_name["extractions"]] == ["My Song (demo).wav"]  # case does not matter
    assert len(percent["extractions"]) == len(underscore["extractions"]) == 1
    assert len(structured(one)["extractions"]) == 1
    assert "1 extraction," in text_of(one) and "1.5 in the last 24 hours" in text_of(one)
    import json

    data = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
    assert [e["source"] for e in data["extractions"]] == [e["source"] for e in everything["extractions"]]
    assert [e["status"] for e in json.loads(filtered.contents[0].text)["extractions"]] == ["SUBMITTED"]  # type: ignore[union-attr]


async def test_a_damaged_ledger_is_moved_aside(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "ledger.sqlite3").write_bytes(b"this is not a database " * 200)
    async with connect(make_settings(sandbox, state_dir=state)) as client:
        structured(await client.call_tool("extract_stems", {"audio_file": str(song)}))
        listed = structured(await client.call_tool("list_extractions", {}))
    aside = list(state.glob("ledger.sqlite3.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert len(listed["extractions"]) == 1


async def test_an_unusable_state_folder_stops_paid_jobs_only(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    job = sandbox.state.new_job(
        stems=("vocals",), preprocessing_options=(), source="x", webhook_url=None, credit_estimate=0.5
    )
    async with connect(make_settings(sandbox, state_dir=blocker / "state")) as client:
        refused = await client.call_tool("extract_stems", {"audio_file": str(song)})
        status = await client.call_tool("get_extraction", {"task_id": job.task_id})
        listing = await client.call_tool("list_extractions", {})
    assert refused.is_error
    assert "MUSICGPT_MCP_STATE_DIR" in text_of(refused) and "Nothing was submitted" in text_of(refused)
    assert posts(sandbox) == 0
    structured(status)  # the free tools keep working
    assert listing.is_error and "MUSICGPT_MCP_STATE_DIR" in text_of(listing)


async def test_a_ledger_from_a_newer_release_is_left_alone(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with connect(make_settings(sandbox, state_dir=state)) as client:
        structured(await client.call_tool("extract_stems", {"audio_url": "https://example.com/a.mp3"}))
    with sqlite3.connect(state / "ledger.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 99")
    async with connect(make_settings(sandbox, state_dir=state)) as client:
        refused = await client.call_tool("extract_stems", {"audio_file": str(song)})
    assert refused.is_error and "newer musicgpt-mcp" in text_of(refused)
    assert posts(sandbox) == 1


async def test_the_sandbox_keeps_a_ledger_of_its_own(song: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "real-state"
    params = server_params("--sandbox", "--sandbox-eta", "1", MUSICGPT_MCP_STATE_DIR=str(state_dir))
    async with Client(params) as client:
        structured(await client.call_tool("extract_stems", {"audio_file": str(song)}))
        listed = structured(await client.call_tool("list_extractions", {}))
    assert len(listed["extractions"]) == 1
    assert not state_dir.exists()  # the real ledger was never touched


async def test_ledger_tools_in_the_tool_list() -> None:
    from pydantic import SecretStr

    from musicgpt_mcp.config import Settings

    server = create_server(Settings(api_key=SecretStr("x"), base_url="http://127.0.0.1:9"))
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    listing = tools["list_extractions"]
    assert listing.annotations is not None and listing.annotations.read_only_hint is True
    assert listing.output_schema is not None
    assert set(listing.output_schema["required"]) >= {"extractions", "credits_last_24_hours", "credits_last_30_days"}
    assert listing.input_schema["properties"]["status"]["anyOf"][0]["enum"][-1] == "OUTCOME_UNKNOWN"
    out = tools["extract_stems"].output_schema
    assert out is not None and {"submitted_at", "reused"} <= set(out["required"])
