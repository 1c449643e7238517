"""The fault matrix: what the model reads when MusicGPT or the network misbehaves.

Each scenario queues faults at the sandbox's switchboard, makes one tool call through the
in-process Client, and checks the exact text the model sees, that the call ended within a bound,
and how many submits MusicGPT received (never more than one per call).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from musicgpt_mcp.sandbox import Fault, Sandbox

from .conftest import closed_port, connect, make_settings
from .test_status import text_of

pytestmark = pytest.mark.anyio

E = "Error executing tool {tool}: "
UNKNOWN = (
    "The extraction may or may not have been submitted. Check the extractions in your MusicGPT dashboard "
    "before submitting again, so you are not charged twice."
)
HTML = Fault(status=200, body=b"<!DOCTYPE html><title>Cloudflare</title>", content_type="text/html")
EMPTY = Fault(status=200, body=b"")
MALFORMED = Fault(status=200, body=b'{"success": true, "task_id": ')
LYING = Fault(status=200, body=b'{"success": true}', headers=(("Content-Length", "4000"),))
RESET = Fault(action="reset")
HANG = Fault(status=200, action="hang", delay=5.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    tool: str
    faults: tuple[tuple[str, Fault, int], ...]
    expected: str
    submits: int
    is_error: bool = True
    within: float = 15.0
    settings: dict[str, object] = field(default_factory=dict)
    # Module constants of musicgpt_mcp.musicgpt ("module.NAME") to lower for the scenario (time bounds).
    patch: dict[str, float] = field(default_factory=dict)


SUBMIT = (
    Scenario(
        "submit 500",
        "extract_stems",
        (("submit", Fault(), 1),),
        E + "MusicGPT had a server error (HTTP 500: Internal Server Error). The job was probably not created, "
        "but MusicGPT did not confirm it. Check the extractions in your MusicGPT dashboard before submitting "
        "again, so you are not charged twice. If none is there, try again in a minute.",
        1,
    ),
    Scenario(
        "submit 502 html",
        "extract_stems",
        (("submit", Fault(status=502, body=b"<html>Bad gateway</html>", content_type="text/html"), 1),),
        E + "MusicGPT had a server error (HTTP 502 (an HTML page)). The job was probably not created, but "
        "MusicGPT did not confirm it. Check the extractions in your MusicGPT dashboard before submitting "
        "again, so you are not charged twice. If none is there, try again in a minute.",
        1,
    ),
    Scenario(
        "submit 503 retry-after is not retried",
        "extract_stems",
        (("submit", Fault(status=503, body=b"", headers=(("Retry-After", "1"),)), 1),),
        E + "MusicGPT had a server error (HTTP 503 (an empty body)). The job was probably not created, but "
        "MusicGPT did not confirm it. Check the extractions in your MusicGPT dashboard before submitting "
        "again, so you are not charged twice. If none is there, try again in a minute.",
        1,
    ),
    Scenario(
        "submit 429 retry-after",
        "extract_stems",
        (("submit", Fault(status=429, body=b'{"error": "Rate limit exceeded"}', headers=(("Retry-After", "30"),)), 1),),
        E + "MusicGPT's rate limit was reached (HTTP 429: Rate limit exceeded; it allows 60 extraction submits "
        "a minute). The job was not accepted. Wait 30 seconds before submitting again.",
        1,
    ),
    Scenario(
        "submit 429 bare",
        "extract_stems",
        (("submit", Fault(status=429, body=b"slow down", content_type="text/plain"), 1),),
        E + "MusicGPT's rate limit was reached (HTTP 429 (a body that is not JSON); it allows 60 extraction "
        "submits a minute). The job was not accepted. Wait a minute before submitting again.",
        1,
    ),
    Scenario(
        "submit 401",
        "extract_stems",
        (("submit", Fault(status=401, body=b'{"success": false, "error": "Unauthorized"}'), 1),),
        E + "MusicGPT rejected the API key (HTTP 401: Unauthorized). Nothing was charged. Check MUSICGPT_API_KEY "
        "in this server's environment: it must be the key from the MusicGPT API dashboard, pasted as is, "
        "without a 'Bearer' prefix. Restart the server after changing it.",
        1,
    ),
    Scenario(
        "submit 402",
        "extract_stems",
        (("submit", Fault(status=402, body=b'{"message": "Insufficient credits"}'), 1),),
        E + "MusicGPT says the account does not have enough credits (HTTP 402: Insufficient credits). Nothing "
        "was charged. Add credits in the MusicGPT dashboard, then submit again.",
        1,
    ),
    Scenario(
        "submit 422 message",
        "extract_stems",
        (("submit", Fault(status=422, body=b'{"success": false, "message": "Unsupported audio format"}'), 1),),
        E + "MusicGPT rejected the request (HTTP 422): Unsupported audio format. Nothing was charged. Fix the "
        "arguments and submit again.",
        1,
    ),
    Scenario(
        "submit 200 html",
        "extract_stems",
        (("submit", HTML, 1),),
        E + "MusicGPT answered HTTP 200 with an HTML page instead of JSON. " + UNKNOWN,
        1,
    ),
    Scenario(
        "submit 200 empty",
        "extract_stems",
        (("submit", EMPTY, 1),),
        E + "MusicGPT answered HTTP 200 with an empty body instead of JSON. " + UNKNOWN,
        1,
    ),
    Scenario(
        "submit 200 malformed",
        "extract_stems",
        (("submit", MALFORMED, 1),),
        E + "MusicGPT answered HTTP 200 with a body that is not JSON instead of JSON. " + UNKNOWN,
        1,
    ),
    Scenario(
        "submit 200 no task_id",
        "extract_stems",
        (("submit", Fault(status=200, body=b'{"success": true, "eta": 5}'), 1),),
        E + "MusicGPT answered HTTP 200 without a task_id. " + UNKNOWN,
        1,
    ),
    Scenario(
        "submit slow but in time",
        "extract_stems",
        (
            (
                "submit",
                Fault(
                    status=200,
                    action="hang",
                    delay=0.5,
                    body=b'{"success": true, "task_id": "t-slow", "eta": 7, "credit_estimate": 2}',
                ),
                1,
            ),
        ),
        "Submitted My Song (demo).wav to MusicGPT for stem extraction (drums, bass, piano, guitar). task_id: "
        "t-slow. Expected wait: about 7 s; estimated cost: 2 credits. Next: call get_extraction with "
        "task_id='t-slow' and wait_seconds to wait for the stems.",
        1,
        is_error=False,
    ),
    Scenario(
        "submit hang",
        "extract_stems",
        (("submit", HANG, 1),),
        E + "MusicGPT did not answer in time (no reply within 1 s). " + UNKNOWN,
        1,
    ),
    Scenario(
        "submit reset after upload",
        "extract_stems",
        (("submit", RESET, 1),),
        E + "The connection to MusicGPT broke during the request ({reset}). " + UNKNOWN,
        1,
    ),
    Scenario(
        "submit reset mid-upload",
        "extract_stems",
        (("submit", Fault(action="reset", size=64 * 1024), 1),),
        E + "The connection to MusicGPT broke during the request ({reset_upload}). " + UNKNOWN,
        1,
    ),
    Scenario(
        "submit lying content-length",
        "extract_stems",
        (("submit", LYING, 1),),
        E + "The connection to MusicGPT broke during the request ({cut}). " + UNKNOWN,
        1,
    ),
    Scenario(
        "submit 200 nested 200,000 deep",
        "extract_stems",
        (("submit", Fault(status=200, body=b"[" * 200_000 + b"]" * 200_000), 1),),
        E + "MusicGPT answered HTTP 200 with a body that is not JSON instead of JSON. " + UNKNOWN,
        1,
    ),
    Scenario(
        "submit refused",
        "extract_stems",
        (),
        E + "Could not connect to MusicGPT at {closed} (the connection was refused or the host is unreachable; "
        "tried 3 times). Nothing was sent, so nothing was charged. Check the network connection (and "
        "MUSICGPT_BASE_URL, if set) and try again.",
        0,
        settings={"base_url": "closed"},
    ),
)

CUT = "the server closed the connection before its reply was complete"
STATUS_FAILED = "Checking the job's status with MusicGPT failed after retries: {reason}. Try again in a minute."
STATUS = (
    Scenario(
        "status 503 then ok",
        "get_extraction",
        (("status", Fault(status=503, body=b""), 1),),
        "Extraction {task} is COMPLETED: vocals ready (mp3 and wav). Next: call download_stems with "
        "task_id='{task}' to save them.",
        0,
        is_error=False,
    ),
    Scenario(
        "status 429 retry-after then ok",
        "get_extraction",
        (("status", Fault(status=429, body=b"{}", headers=(("Retry-After", "1"),)), 1),),
        "Extraction {task} is COMPLETED: vocals ready (mp3 and wav). Next: call download_stems with "
        "task_id='{task}' to save them.",
        0,
        is_error=False,
    ),
    Scenario(
        "status 502 persists",
        "get_extraction",
        (("status", Fault(status=502, body=b"<html/>"), 4),),
        E + STATUS_FAILED.format(reason="HTTP 502"),
        0,
    ),
    Scenario(
        "status 500 is not retried",
        "get_extraction",
        (("status", Fault(), 1),),
        E + "MusicGPT's status request failed (HTTP 500: Internal Server Error). Try again in a minute.",
        0,
    ),
    Scenario(
        "status 200 html",
        "get_extraction",
        (("status", HTML, 1),),
        E + "MusicGPT answered the status request with an HTML page. Try again in a minute.",
        0,
    ),
    Scenario(
        "status 200 empty",
        "get_extraction",
        (("status", EMPTY, 1),),
        E + "MusicGPT answered the status request with an empty body. Try again in a minute.",
        0,
    ),
    Scenario(
        "status 200 malformed",
        "get_extraction",
        (("status", MALFORMED, 1),),
        E + "MusicGPT answered the status request with a body that is not JSON. Try again in a minute.",
        0,
    ),
    Scenario(
        "status 200 no conversion",
        "get_extraction",
        (("status", Fault(status=200, body=b'{"success": false, "error": "Try later"}'), 1),),
        E + "MusicGPT's status reply for task '{task}' had no conversion in it. It said: Try later. Try again "
        "in a minute.",
        0,
    ),
    Scenario(
        "status reset once",
        "get_extraction",
        (("status", RESET, 1),),
        "Extraction {task} is COMPLETED: vocals ready (mp3 and wav). Next: call download_stems with "
        "task_id='{task}' to save them.",
        0,
        is_error=False,
    ),
    Scenario(
        "status hangs",
        "get_extraction",
        (("status", HANG, 4),),
        E + STATUS_FAILED.format(reason="no reply within 1 s"),
        0,
        within=20.0,
    ),
    Scenario(
        "status lying content-length",
        "get_extraction",
        (("status", LYING, 4),),
        E + STATUS_FAILED.format(reason=CUT),
        0,
    ),
    Scenario(
        "status 200 nested 200,000 deep",
        "get_extraction",
        (("status", Fault(status=200, body=b'{"conversion": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"), 1),),
        E + "MusicGPT answered the status request with a body that is not JSON. Try again in a minute.",
        0,
    ),
    Scenario(
        "status drips past the bound",
        "get_extraction",
        (("status", Fault(status=200, action="drip", body=b'{"success": true, "conversion": {}}' * 4, delay=0.4), 1),),
        E + "Checking the job's status with MusicGPT did not complete in time: MusicGPT was answering too slowly. "
        "Try again in a minute.",
        0,
        within=6.0,
        patch={"transport.STATUS_BOUND": 2.0},
    ),
    Scenario(
        "status retry-after beyond the bound",
        "get_extraction",
        (("status", Fault(status=503, body=b"", headers=(("Retry-After", "20"),)), 1),),
        E + STATUS_FAILED.format(reason="HTTP 503"),
        0,
        within=4.0,
        patch={"transport.STATUS_BOUND": 2.0},
    ),
    Scenario(
        "status 401",
        "get_extraction",
        (("status", Fault(status=401, body=b'{"error": "Invalid API key"}'), 1),),
        E + "MusicGPT refused the status request (HTTP 401: Invalid API key). Check MUSICGPT_API_KEY in this "
        "server's environment; it must be the key the job was submitted with.",
        0,
    ),
)

NO_STEMS = E + "No stems could be saved for extraction {task}. vocals: "
DOWNLOAD = (
    Scenario(
        "download truncated once",
        "download_stems",
        (("download", Fault(action="truncate", size=100), 1),),
        "Saved 1 stem file for extraction {task} in {dir}:\n- vocals: {dir}/vocals.mp3 (8 KB)",  # the sandbox's 2 s MP3
        0,
        is_error=False,
    ),
    Scenario(
        "download truncated always",
        "download_stems",
        (("download", Fault(action="truncate", size=100), 4),),
        NO_STEMS + "Downloading the stem failed after retries: {cut}. Try again in a minute.",
        0,
    ),
    Scenario(
        "download 404",
        "download_stems",
        (("download", Fault(status=404, body=b"<Error/>"), 1),),
        NO_STEMS + "the storage server answered HTTP 404",
        0,
    ),
    Scenario(
        "download 503 then ok",
        "download_stems",
        (("download", Fault(status=503, body=b""), 1),),
        "Saved 1 stem file for extraction {task} in {dir}:\n- vocals: {dir}/vocals.mp3 (8 KB)",  # the sandbox's 2 s MP3
        0,
        is_error=False,
    ),
    Scenario(
        "download reset always",
        "download_stems",
        (("download", RESET, 4),),
        NO_STEMS + "Downloading the stem failed after retries: {reset}. Try again in a minute.",
        0,
    ),
    Scenario(
        "download huge",
        "download_stems",
        (("download", Fault(action="stream", size=10 * 2**30), 1),),
        NO_STEMS + "the file is 10737418240 bytes, over the 4294967296-byte limit (MUSICGPT_MCP_MAX_DOWNLOAD_MB)",
        0,
    ),
    Scenario(
        "download hangs",
        "download_stems",
        (("download", HANG, 4),),
        NO_STEMS + "Downloading the stem failed after retries: no reply within 1 s. Try again in a minute.",
        0,
        within=20.0,
    ),
    Scenario(
        "download stalls",
        "download_stems",
        (("download", Fault(status=200, action="drip", size=1000, delay=30), 1),),
        NO_STEMS + "the storage server sent nothing for 1 s; abandoned",
        0,
        within=6.0,
        patch={"storage.DOWNLOAD_STALL": 1.0},
    ),
    Scenario(
        "download html instead of audio",
        "download_stems",
        (
            (
                "download",
                Fault(status=200, body=b"<html><body>Access denied</body></html>", content_type="text/html"),
                1,
            ),
        ),
        NO_STEMS + "the storage server sent an HTML or XML page, not mp3 audio; discarded",
        0,
    ),
    Scenario(
        "download redirect to loopback",
        "download_stems",
        (("download", Fault(status=302, body=b"", headers=(("Location", "http://127.0.0.1:1/admin"),)), 1),),
        NO_STEMS + "refused: 127.0.0.1 is a loopback address, and downloads go only to public addresses (a stem URL "
        "pointing inside your network is not fetched). If this storage host is yours, list it in "
        "MUSICGPT_MCP_STORAGE_HOSTS",
        0,
    ),
    Scenario(
        "download redirect to cloud metadata",
        "download_stems",
        (("download", Fault(status=301, body=b"", headers=(("Location", "http://169.254.169.254/latest/"),)), 1),),
        NO_STEMS + "refused: 169.254.169.254 is a link-local (cloud metadata) address, and downloads go only to "
        "public addresses (a stem URL pointing inside your network is not fetched). If this storage host is yours, "
        "list it in MUSICGPT_MCP_STORAGE_HOSTS",
        0,
    ),
    Scenario(
        "download redirect to file",
        "download_stems",
        (("download", Fault(status=302, body=b"", headers=(("Location", "file:///etc/shadow"),)), 1),),
        NO_STEMS + "the storage server redirected to a URL that is not http(s) (file); not followed",
        0,
    ),
    Scenario(
        "download empty",
        "download_stems",
        (("download", Fault(status=200, body=b"", content_type="audio/mpeg"), 1),),
        NO_STEMS + "the storage server sent an empty file",
        0,
    ),
)


@pytest.mark.parametrize("scenario", [*SUBMIT, *STATUS, *DOWNLOAD], ids=lambda s: s.name)
async def test_fault(
    sandbox: Sandbox, song: Path, tmp_path: Path, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in scenario.patch.items():
        monkeypatch.setattr(f"musicgpt_mcp.musicgpt.{name}", value)
    out = tmp_path / "out"
    settings: dict[str, object] = {"read_timeout": 1.0, "output_dir": out}
    closed = f"http://127.0.0.1:{closed_port()}/api/public"
    if scenario.settings.get("base_url") == "closed":
        settings["base_url"] = closed
    # A bigger upload, so a reset can land mid-body.
    song.write_bytes(song.read_bytes() + bytes(512 * 1024))
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, **settings)) as client:
        task = ""
        if scenario.tool != "extract_stems":
            submitted = await client.call_tool("extract_stems", {"audio_file": str(song), "stems": ["vocals"]})
            task = submitted.structured_content["task_id"]  # type: ignore[index]
            sandbox.state.clear_records()
        for endpoint, fault, times in scenario.faults:
            sandbox.state.queue_fault(endpoint, fault, times)  # type: ignore[arg-type]
        args = {"audio_file": str(song)} if scenario.tool == "extract_stems" else {"task_id": task}
        started = time.monotonic()
        result = await client.call_tool(scenario.tool, args)
        elapsed = time.monotonic() - started
    text = text_of(result)
    expected = scenario.expected.format(
        tool=scenario.tool,
        task=task,
        closed=closed,
        dir=out / f"My Song (demo) - {task[:8]}" if task else "",
        reset=RESET_TEXT,
        reset_upload=RESET_TEXT,
        cut=CUT,
    )
    assert (result.is_error, text) == (scenario.is_error, expected)
    assert elapsed < scenario.within
    assert len(sandbox.state.submits()) == scenario.submits


RESET_TEXT = "the connection was reset"
