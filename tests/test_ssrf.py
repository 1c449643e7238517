"""Downloads go only to public addresses, checked on the address connected to, for every redirect hop,
unless the host is listed in MUSICGPT_MCP_STORAGE_HOSTS; and what arrives must be the audio asked for.

Stem URLs come from MusicGPT's replies, so a hostile or compromised reply could name a service inside
the user's network. "Internal" here is a second loopback server the test starts, not listed.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from musicgpt_mcp.musicgpt.addresses import non_public
from musicgpt_mcp.sandbox import Fault, Sandbox

from .conftest import connect, make_settings
from .test_status import submit, text_of

pytestmark = pytest.mark.anyio

REFUSED = (
    "refused: {shown} is a {kind} address, and downloads go only to public addresses (a stem URL pointing "
    "inside your network is not fetched). If this storage host is yours, list it in MUSICGPT_MCP_STORAGE_HOSTS"
)


@pytest.fixture
def internal() -> Iterator[tuple[str, list[str]]]:
    """An internal service: answers every GET with an admin page, and counts what reached it."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b"<html><title>Router admin</title></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


async def download_with_map(
    sandbox: Sandbox, song: Path, out: Path, urls: dict[str, str], **settings: Any
) -> tuple[Any, str]:
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out, **settings)) as client:
        task_id = await submit(client, song, ["vocals"])
        sandbox.state.jobs[task_id].mp3_override = urls
        result = await client.call_tool("download_stems", {"task_id": task_id})
    return result, task_id


async def test_stem_url_naming_an_internal_service_is_not_fetched(
    sandbox: Sandbox, song: Path, tmp_path: Path, internal: tuple[str, list[str]]
) -> None:
    netloc, seen = internal
    result, task_id = await download_with_map(
        sandbox, song, tmp_path / "out", {"vocals": f"http://{netloc}/vocals.mp3"}
    )
    assert result.is_error
    assert text_of(result) == (
        f"Error executing tool download_stems: No stems could be saved for extraction {task_id}. vocals: "
        + REFUSED.format(shown="127.0.0.1", kind="loopback")
    )
    assert seen == []
    assert not (tmp_path / "out").exists() or [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


async def test_redirect_from_a_storage_host_to_an_internal_service_is_not_followed(
    sandbox: Sandbox, song: Path, tmp_path: Path, internal: tuple[str, list[str]]
) -> None:
    netloc, seen = internal
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=tmp_path / "out")) as client:
        task_id = await submit(client, song, ["vocals"])
        sandbox.state.queue_fault(
            "download", Fault(status=302, body=b"", headers=(("Location", f"http://{netloc}/vocals.mp3"),))
        )
        result = await client.call_tool("download_stems", {"task_id": task_id})
    assert result.is_error
    assert text_of(result).endswith(f"{task_id}. vocals: " + REFUSED.format(shown="127.0.0.1", kind="loopback"))
    assert len(sandbox.state.downloads) == 1  # the storage host was asked; the internal service was not
    assert seen == []


async def test_host_names_are_checked_on_the_address_they_resolve_to(
    sandbox: Sandbox, song: Path, tmp_path: Path, internal: tuple[str, list[str]]
) -> None:
    netloc, seen = internal
    port = netloc.rsplit(":", 1)[1]
    result, _ = await download_with_map(sandbox, song, tmp_path / "out", {"vocals": f"http://localhost:{port}/v.mp3"})
    assert result.is_error
    assert "vocals: refused: localhost (" in text_of(result)
    assert ") is a loopback address" in text_of(result)
    assert seen == []


@pytest.mark.parametrize(
    ("host", "shown", "kind"),
    [
        ("169.254.169.254", "169.254.169.254", "link-local (cloud metadata)"),
        ("10.20.30.40", "10.20.30.40", "private"),
        ("192.168.1.1", "192.168.1.1", "private"),
        ("100.64.0.1", "100.64.0.1", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "0.0.0.0", "unspecified"),
        ("224.0.0.251", "224.0.0.251", "multicast"),
        ("[::1]", "::1", "loopback"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1", "loopback"),
        ("[fd00::1]", "fd00::1", "private"),
        ("[fe80::1]", "fe80::1", "link-local"),
        ("2130706433", "2130706433 (127.0.0.1)", "loopback"),  # 127.0.0.1 as a number
    ],
)
async def test_non_public_addresses_are_refused_without_connecting(
    sandbox: Sandbox, song: Path, tmp_path: Path, host: str, shown: str, kind: str
) -> None:
    result, _ = await download_with_map(sandbox, song, tmp_path / "out", {"vocals": f"http://{host}/latest/meta-data"})
    assert result.is_error
    assert text_of(result).endswith("vocals: " + REFUSED.format(shown=shown, kind=kind))


async def test_a_listed_storage_host_is_reached_but_must_send_audio(
    sandbox: Sandbox, song: Path, tmp_path: Path, internal: tuple[str, list[str]]
) -> None:
    netloc, seen = internal
    out = tmp_path / "out"
    result, task_id = await download_with_map(
        sandbox, song, out, {"vocals": f"http://{netloc}/vocals.mp3"}, storage_hosts=(sandbox.netloc, netloc)
    )
    assert seen == ["/vocals.mp3"]  # listed, so fetched
    assert result.is_error
    assert text_of(result).endswith(
        f"{task_id}. vocals: the storage server sent an HTML or XML page, not mp3 audio; discarded"
    )
    assert [p for p in out.rglob("*") if p.is_file()] == []


async def test_a_listed_host_is_listed_with_its_port(
    sandbox: Sandbox, song: Path, tmp_path: Path, internal: tuple[str, list[str]]
) -> None:
    netloc, seen = internal
    result, _ = await download_with_map(
        sandbox, song, tmp_path / "out", {"vocals": f"http://{netloc}/v.mp3"}, storage_hosts=(sandbox.netloc,)
    )
    assert result.is_error
    assert seen == []


@pytest.mark.parametrize(
    ("body", "fmt", "what"),
    [
        (b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "mp3", "an HTML or XML page"),
        (b'{"error": "expired"}', "wav", "JSON"),
        (b"\xff\xfb\x90\xc0" + bytes(500), "wav", "other data"),  # an MP3 where a WAV was asked for
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "mp3", "other data"),
    ],
)
async def test_a_download_that_is_not_the_audio_asked_for_is_discarded(
    sandbox: Sandbox, song: Path, tmp_path: Path, body: bytes, fmt: str, what: str
) -> None:
    out = tmp_path / "out"
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=out)) as client:
        task_id = await submit(client, song, ["vocals"])
        sandbox.state.queue_fault("download", Fault(status=200, body=body, content_type="audio/mpeg"))
        result = await client.call_tool("download_stems", {"task_id": task_id, "format": fmt})
    assert result.is_error
    assert text_of(result).endswith(f"{task_id}. vocals: the storage server sent {what}, not {fmt} audio; discarded")
    assert [p for p in out.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("location", "times", "reason"),
    [
        ("file:///etc/passwd", 1, "the storage server redirected to a URL that is not http(s) (file); not followed"),
        ("/files/{task}/vocals.mp3", 6, "the storage server redirected more than 5 times; not followed"),
        (
            "http://user:pass@127.0.0.1/x",
            1,
            "the storage server redirected to a URL with credentials or control characters; not followed",
        ),
    ],
)
async def test_redirects_are_checked_hop_by_hop(
    sandbox: Sandbox, song: Path, tmp_path: Path, location: str, times: int, reason: str
) -> None:
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=tmp_path / "out")) as client:
        task_id = await submit(client, song, ["vocals"])
        fault = Fault(status=302, body=b"", headers=(("Location", location.format(task=task_id)),))
        sandbox.state.queue_fault("download", fault, times=times)
        result = await client.call_tool("download_stems", {"task_id": task_id})
    assert result.is_error
    assert text_of(result).endswith(f"{task_id}. vocals: {reason}")


async def test_a_redirect_within_the_storage_host_is_followed(sandbox: Sandbox, song: Path, tmp_path: Path) -> None:
    sandbox.state.eta = 0
    async with connect(make_settings(sandbox, output_dir=tmp_path / "out")) as client:
        task_id = await submit(client, song, ["vocals"])
        target = f"/files/{task_id}/vocals.mp3"
        sandbox.state.queue_fault("download", Fault(status=307, body=b"", headers=(("Location", target),)))
        result = await client.call_tool("download_stems", {"task_id": task_id})
    assert not result.is_error, text_of(result)
    assert len(sandbox.state.downloads) == 2


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("127.8.9.10", "loopback"),
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("172.16.0.1", "private"),
        ("100.127.255.254", "shared (carrier-grade NAT)"),
        ("192.0.2.1", "private"),  # documentation range
        ("240.0.0.1", "private"),  # reserved for future use, listed by ipaddress as not global
        ("255.255.255.255", "private"),
        ("::", "unspecified"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:8.8.8.8", None),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),  # NAT64 of 169.254.169.254
        ("2001:db8::1", "private"),  # documentation range
        ("fec0::1", "site-local"),
    ],
)
def test_which_addresses_are_public(address: str, kind: str | None) -> None:
    assert non_public(ipaddress.ip_address(address)) == kind
