"""The stem player in a real browser: headless Chromium, a test host page with the official AppBridge,
and this test as the host's MCP client, talking to the real server against the sandbox.

Chromium is Debian's (`apt-get install -y chromium`); Playwright drives it (its own browser download
is not used). A screenshot of the player is saved on every run (see `screenshot` below); to refresh
docs/development.md's: `PLAYER_SCREENSHOT=docs/player.png uv run pytest tests/test_player.py -k finished`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from mcp import Client
from mcp.client.extension import advertise
from mcp.types import CallToolResult

from musicgpt_mcp import player
from musicgpt_mcp.catalog import STEMS
from musicgpt_mcp.sandbox import Sandbox
from musicgpt_mcp.sandbox.audio import stem_tone
from musicgpt_mcp.server import create_server

from .conftest import REPO, make_settings, require, require_node_tools
from .test_status import submit

pytestmark = pytest.mark.anyio

HOST_DIR = REPO / "tests" / "player_host"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOAD_TIMEOUT = 30_000  # ms: generous, for a loaded CI machine; a broken player fails by "never", not "slowly"


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    require(found is not None, "Chromium", "install Debian's package: apt-get install -y chromium")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        require(False, "Playwright for Python", "run `uv sync` (it is a dev dependency)")
    require_node_tools()
    return str(found)


def view_csp(csp: dict[str, list[str]]) -> str:
    """The policy a host puts on the view: the spec's restrictive default, widened only by what the
    resource declares (MCP Apps, "UI Resource Format", Host Behavior)."""
    resources = " ".join(csp.get("resourceDomains", []))
    connect = " ".join(csp.get("connectDomains", [])) or "'none'"
    frames = " ".join(csp.get("frameDomains", [])) or "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' 'unsafe-inline' {resources}".strip(),
            f"style-src 'self' 'unsafe-inline' {resources}".strip(),
            f"img-src 'self' data: {resources}".strip(),
            f"media-src 'self' data: {resources}".strip(),
            f"connect-src {connect}",
            f"frame-src {frames}",
            "object-src 'none'",
            "base-uri 'self'",
        ]
    )


class StaticServer:
    """Loopback HTTP for the browser: the host page, node_modules (for the AppBridge), and the view.

    The view is served from `localhost` while the host page is on `127.0.0.1`: a different origin,
    as hosts do, so the view cannot reach into the host page.
    """

    def __init__(self, view_html: str, view_csp: str) -> None:
        statics = {"/host.html": HOST_DIR / "host.html", "/host/host.js": HOST_DIR / "host.js"}
        modules = (REPO / "node_modules").resolve()

        served: list[str] = []
        self.served = served

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the host page loads ~110 modules

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                served.append(f"{self.headers.get('Host')}{path}")
                if path == "/favicon.ico":  # the host page's, asked by the browser itself
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/view":
                    self._send(view_html.encode(), "text/html; charset=utf-8", {"Content-Security-Policy": view_csp})
                elif path in statics:
                    kind = "text/html" if path.endswith(".html") else "text/javascript"
                    self._send(statics[path].read_bytes(), kind + "; charset=utf-8")
                elif path.startswith("/node_modules/") and path.endswith((".js", ".mjs")):
                    file = (modules / path.removeprefix("/node_modules/")).resolve()
                    if modules in file.parents and file.is_file():
                        self._send(file.read_bytes(), "text/javascript; charset=utf-8")
                    else:
                        self.send_error(404)
                else:
                    self.send_error(404)

            def _send(self, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/host.html"

    @property
    def view_url(self) -> str:
        return f"http://localhost:{self.port}/view"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Host:
    """The browser with the test host page, and what it saw."""

    client: Client
    page: Any
    server: StaticServer
    tools: dict[str, Any]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    requests: list[tuple[str, Any]] = field(default_factory=list)  # (url, the frame that asked)
    console: list[str] = field(default_factory=list)
    view: Any = None

    async def show(
        self, tool: str, arguments: dict[str, Any], theme: str = "light", capabilities: dict[str, Any] | None = None
    ) -> Any:
        """Call `tool` as the model would, then render the view with its input and result."""
        result = await self.client.call_tool(tool, arguments)
        return await self.render(arguments, result, theme, capabilities)

    async def render(
        self,
        arguments: dict[str, Any],
        result: CallToolResult,
        theme: str = "light",
        capabilities: dict[str, Any] | None = None,
    ) -> Any:
        """Render the view for a tool call already made, with the host capabilities given (beside tools and
        resources): e.g. {"downloadFile": {}, "updateModelContext": {"text": {}}, "message": {"text": {}}}."""
        await self.page.evaluate(
            "args => window.renderView(args)",
            {
                "viewUrl": self.server.view_url,
                "toolInput": arguments,
                "toolResult": wire(result),
                "capabilities": capabilities or {},
                "hostContext": {
                    "theme": theme,
                    "displayMode": "inline",
                    "availableDisplayModes": ["inline"],
                    "containerDimensions": {"maxWidth": 400, "maxHeight": 800},
                    "platform": "web",
                    "locale": "en-US",
                },
            },
        )
        self.view = next(f for f in self.page.frames if f.url == self.server.view_url)
        return self.view

    async def state(self) -> dict[str, Any]:
        return dict(await self.view.evaluate("stemPlayerDebug.state()"))

    async def until(self, condition: str, timeout: float = LOAD_TIMEOUT) -> None:  # noqa: ASYNC109 - the browser's wait, in ms
        """Wait for a JS condition over `s`, the player's debug state."""
        await self.view.wait_for_function(
            f"() => {{ const s = stemPlayerDebug.state(); return {condition}; }}", timeout=timeout
        )

    def view_calls(self) -> list[str]:
        return [str(params.get("name", method)) for method, params in self.calls]

    def asked(self, method: str) -> list[dict[str, Any]]:
        """The params of every `method` request the view sent the host (ui/download-file, ...)."""
        return [params for m, params in self.calls if m == method]


def wire(result: CallToolResult) -> dict[str, Any]:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide, so one browser serves every test here


@asynccontextmanager
async def launch_browser() -> AsyncIterator[Any]:
    """Headless Chromium, driven by Playwright."""
    executable = chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # Playwright gives the browser a fresh temporary user-data-dir and removes it afterwards.
        launched = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """One Chromium for the module (each test gets a fresh context: its own profile, no shared state)."""
    async with launch_browser() as launched:
        yield launched


@asynccontextmanager
async def open_host(client: Client, browser: Any) -> AsyncIterator[Host]:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    [content] = (await client.read_resource(player.URI)).contents
    assert content.mime_type == "text/html;profile=mcp-app"
    server = StaticServer(content.text, view_csp((content.meta or {})["ui"]["csp"]))  # type: ignore[union-attr]
    context = await browser.new_context(viewport={"width": 440, "height": 900})
    try:
        page = await context.new_page()
        host = Host(client=client, page=page, server=server, tools=tools)
        page.on("request", lambda r: host.requests.append((r.url, r.frame)))
        page.on("console", lambda m: host.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: host.console.append(f"pageerror: {e}"))
        await page.expose_binding("mcpRequest", relay(host))
        await page.goto(server.host_url)
        await page.wait_for_function("() => window.hostReady === true")
        yield host
    finally:
        await context.close()
        server.close()


def relay(host: Host) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The host's side of the view's requests: forwarded to the server, as a host's MCP client does,
    refusing what the spec says a host must refuse."""

    async def handle(source: dict[str, Any], method: str, params: dict[str, Any]) -> dict[str, Any]:
        if source["frame"] != host.page.main_frame:
            raise RuntimeError("only the host page talks to the server")
        host.calls.append((method, params))
        if method == "tools/call":
            tool = host.tools.get(params["name"])
            visibility = ((tool.meta or {}).get("ui") or {}).get("visibility", []) if tool else []
            if "app" not in visibility:
                raise RuntimeError(f"{params['name']} may not be called by an app")
            return wire(await host.client.call_tool(params["name"], params.get("arguments") or {}))
        if method == "resources/read":
            read = await host.client.read_resource(params["uri"])
            return read.model_dump(mode="json", by_alias=True, exclude_none=True)
        if method in HOST_REQUESTS:  # recorded above; a host that saved the file, took the context, posted the message
            return {}
        raise RuntimeError(f"unsupported: {method}")

    return handle


# What the view may ask of a host beyond the server's tools and resources (only when the host offers it).
HOST_REQUESTS = ("ui/download-file", "ui/update-model-context", "ui/message")


def apps_client(sandbox: Sandbox, **overrides: Any) -> Client:
    # These tests play jobs: submitted at once, not quoted for the view to approve (test_studio.py does that).
    settings = make_settings(sandbox, **{"confirm": "never", **overrides})
    apps = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
    return Client(create_server(settings), raise_exceptions=True, extensions=[apps])


def assert_only_bridge_traffic(host: Host) -> None:
    """The view loaded its own document and nothing else: everything else went through the host."""
    from_view = [url for url, frame in host.requests if frame == host.view]
    assert from_view == [host.server.view_url], from_view
    origins = {urlsplit(url).netloc for url, _ in host.requests}
    assert origins <= {f"127.0.0.1:{host.server.port}", f"localhost:{host.server.port}"}, origins
    # And what reached the loopback server from the view's origin: its document, once.
    assert [u for u in host.server.served if u.startswith("localhost")] == [f"localhost:{host.server.port}/view"]
    problems = [
        line for line in host.console if "Content Security Policy" in line or line.startswith(("pageerror", "error"))
    ]
    assert problems == [], problems


async def dominant_frequency(host: Host, stem: str, rate: float) -> float:
    """Rising zero crossings per second over half a second of the decoded stem, from 0.25 s in."""
    crossings = await host.view.evaluate(
        """([name, start, count]) => {
             const x = stemPlayerDebug.samples(name, start, count);
             let n = 0;
             for (let i = 1; i < x.length; i++) if (x[i - 1] < 0 && x[i] >= 0) n++;
             return n;
           }""",
        [stem, int(rate / 4), int(rate / 2)],
    )
    return float(crossings) / 0.5


async def painted(host: Host) -> list[tuple[float, int]]:
    """Per waveform canvas: the share of pixels drawn, and a fingerprint of the drawing."""
    return [
        (float(share), int(fingerprint))
        for share, fingerprint in await host.view.evaluate(
            """() => [...document.querySelectorAll('li.stem canvas')].map((c) => {
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 let drawn = 0, hash = 0;
                 for (let i = 3; i < d.length; i += 4) { if (d[i]) { drawn++; hash = (hash * 31 + i) | 0; } }
                 return [drawn / (c.width * c.height), hash];
               })"""
        )
    ]


async def test_player_plays_and_mixes_a_finished_job(
    sandbox: Sandbox, song: Path, tmp_path: Path, browser: Any
) -> None:
    stems = ["vocals", "drums", "bass", "piano", "guitar"]
    sandbox.state.eta = 0
    sandbox.state.stem_seconds = 6.0
    async with apps_client(sandbox) as client, open_host(client, browser) as host:
        task_id = await submit(client, song, stems)
        await host.show("get_extraction", {"task_id": task_id})
        await host.until("s.phase === 'ready'")
        s = await host.state()

        # A row per stem, in the job's order, each from its MP3, decoded to the stem's own tone.
        names = await host.view.eval_on_selector_all("li.stem", "rows => rows.map((r) => r.dataset.stem)")
        assert names == stems
        assert [(x["name"], x["format"], x["loaded"]) for x in s["stems"]] == [(n, "mp3", True) for n in stems]
        assert 5.9 < s["duration"] < 6.3
        rate = s["stems"][0]["sampleRate"]
        for stem in stems:
            expected = stem_tone(STEMS.index(stem)).frequency
            assert abs(await dominant_frequency(host, stem, rate) - expected) < expected * 0.02, stem

        # Each waveform is drawn, and each differs (the stems' tremolos differ).
        drawn = await painted(host)
        assert len(drawn) == len(stems)
        assert all(share > 0.05 for share, _ in drawn), drawn
        assert len({fingerprint for _, fingerprint in drawn}) == len(stems)

        async def gains() -> dict[str, tuple[float, float]]:
            return {x["name"]: (x["target"], x["gain"]) for x in (await host.state())["stems"]}

        async def settled(expected: dict[str, float]) -> None:
            # The gain nodes themselves reach the targets (they glide 10 ms while playing).
            await host.until(
                "s.stems.every((x) => Math.abs(x.gain - " + json.dumps(expected) + "[x.name]) < 0.01)", timeout=5000
            )
            assert {k: t for k, (t, _) in (await gains()).items()} == expected

        row = lambda stem: host.view.locator(f'li.stem[data-stem="{stem}"]')  # noqa: E731
        all_on = dict.fromkeys(stems, 1.0)
        await settled(all_on)
        await row("drums").locator("button.mute").click()
        await settled({**all_on, "drums": 0.0})
        await row("bass").locator("button.solo").click()
        await settled({**dict.fromkeys(stems, 0.0), "bass": 1.0})
        await row("vocals").locator("button.solo").click()  # two soloed, the muted one stays out
        await settled({**dict.fromkeys(stems, 0.0), "bass": 1.0, "vocals": 1.0})
        await row("drums").locator("button.solo").click()
        await settled({**dict.fromkeys(stems, 0.0), "bass": 1.0, "vocals": 1.0})
        # Keyboard: S and M act on the focused row.
        for stem in ("bass", "vocals", "drums"):
            await row(stem).focus()
            await host.page.keyboard.press("s")
        await row("drums").focus()
        await host.page.keyboard.press("m")
        await row("piano").locator("input.volume").fill("0.4")
        await settled({**all_on, "piano": 0.4})

        # Play: time advances, every stem scheduled for the same instant.
        assert s["position"] == 0 and not s["playing"]
        await host.view.locator("#play").click()
        await host.until("s.playing && s.position > 0.5", timeout=10_000)
        playing = await host.state()
        assert playing["contextState"] == "running"
        starts = {x["scheduledAt"] for x in playing["stems"]}
        assert len(starts) == 1 and None not in starts, starts
        # Mixing while playing: the gain nodes glide to the new targets.
        await row("guitar").locator("button.mute").click()
        await settled({**all_on, "piano": 0.4, "guitar": 0.0})
        assert re.fullmatch(r"0:0\d / 0:06", await host.view.locator("#time").inner_text())

        # Seek: a click three quarters along a waveform moves the time there, still playing.
        box = await row("bass").locator(".lane").bounding_box()
        await row("bass").locator(".lane").click(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
        after = await host.state()
        assert after["playing"] and 4.3 < after["position"] < 5.2, after["position"]

        # Space pauses and plays.
        await row("drums").focus()
        await host.page.keyboard.press(" ")
        paused = await host.state()
        assert not paused["playing"]
        await anyio.sleep(0.3)
        assert (await host.state())["position"] == paused["position"]
        await host.view.locator("#play").focus()
        await host.page.keyboard.press(" ")
        await anyio.sleep(0.3)
        assert (await host.state())["playing"]  # one toggle, even with the button focused (no key-up "click")
        await host.page.keyboard.press(" ")
        await host.until("!s.playing")
        await row("vocals").locator(".lane").click(position={"x": box["width"] * 0.3, "y": box["height"] / 2})
        await screenshot(host, tmp_path)

    assert_only_bridge_traffic(host)
    # The view read the audio through the app-only tool, nothing else.
    assert set(host.view_calls()) == {"read_stem_audio"}


async def screenshot(host: Host, tmp_path: Path) -> None:
    """Every run saves one beside the test's files; PLAYER_SCREENSHOT=path also copies it there."""
    out = tmp_path / "player.png"
    await host.page.locator("#view").screenshot(path=str(out))
    assert out.stat().st_size > 5000
    wanted = os.environ.get("PLAYER_SCREENSHOT")
    if wanted:
        shutil.copyfile(out, wanted)


async def test_player_follows_a_running_job_until_its_stems_are_ready(
    sandbox: Sandbox, song: Path, tmp_path: Path, browser: Any
) -> None:
    sandbox.state.eta = 3
    async with apps_client(sandbox) as client, open_host(client, browser) as host:
        task_id = await submit(client, song, ["vocals", "bass"])
        await host.show("get_extraction", {"task_id": task_id})
        await host.until("s.phase === 'running'", timeout=5000)
        status = (await host.state())["status"]
        assert re.fullmatch(r"(Queued at MusicGPT|Separating the stems), about [1-3] s left…", status), status
        assert await host.view.locator("li.stem").count() == 0
        await host.until("s.phase === 'ready'")
        assert [x["name"] for x in (await host.state())["stems"]] == ["vocals", "bass"]
    assert_only_bridge_traffic(host)
    # It asked for the job's status itself, through the host, until it finished.
    assert "get_extraction" in host.view_calls()
    assert set(host.view_calls()) == {"get_extraction", "read_stem_audio"}


async def test_player_shows_why_a_job_failed_and_follows_the_theme(
    sandbox: Sandbox, song: Path, tmp_path: Path, browser: Any
) -> None:
    sandbox.state.eta = 0
    async with apps_client(sandbox) as client, open_host(client, browser) as host:
        task_id = await submit(client, song, ["vocals"])
        sandbox.state.jobs[task_id].fail_reason = "The audio is too quiet to separate"
        await host.show("get_extraction", {"task_id": task_id}, theme="dark")
        await host.until("s.phase === 'failed'", timeout=10_000)
        s = await host.state()
        assert s["error"] == "The extraction failed: The audio is too quiet to separate. It produced no stems."
        assert await host.view.locator("#error").is_visible()
        assert await host.view.locator("li.stem").count() == 0

        async def background() -> float:
            rgb = await host.view.evaluate("getComputedStyle(document.body).backgroundColor")
            r, g, b = (int(v) for v in re.findall(r"\d+", rgb)[:3])
            return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

        assert await background() < 0.2
        await host.page.evaluate("window.setTheme('light')")
        await host.view.wait_for_function("() => document.documentElement.dataset.theme === 'light'")
        assert await background() > 0.8
    assert_only_bridge_traffic(host)
    assert host.view_calls() == []


async def test_player_plays_what_download_stems_saved_as_wav(
    sandbox: Sandbox, song: Path, tmp_path: Path, browser: Any
) -> None:
    sandbox.state.eta = 0
    async with apps_client(sandbox, output_dir=tmp_path / "out") as client, open_host(client, browser) as host:
        task_id = await submit(client, song, ["vocals", "drums", "bass"])
        await host.show("download_stems", {"task_id": task_id, "stems": ["drums", "bass"], "format": "wav"})
        await host.until("s.phase === 'ready'")
        s = await host.state()
        assert [(x["name"], x["format"]) for x in s["stems"]] == [("drums", "wav"), ("bass", "wav")]
        for stem in ("drums", "bass"):
            expected = stem_tone(STEMS.index(stem)).frequency
            assert abs(await dominant_frequency(host, stem, s["stems"][0]["sampleRate"]) - expected) < expected * 0.02
    assert_only_bridge_traffic(host)
    assert set(host.view_calls()) == {"read_stem_audio"}
