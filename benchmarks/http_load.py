"""Load on the HTTP transport, measured with wrk (a C load generator, so the client costs little CPU).

For tools/list and get_extraction (against the sink, which answers any task as COMPLETED), with 1, 50 and
200 concurrent connections: requests per second and p50/p99 latency of `musicgpt-mcp --transport http`,
beside the floor (benchmarks/floor_http.py: one tool, same SDK, same transport), measured one after the
other on the same core. Then one replica against two, each replica on its own core.

Cores, on a 2-core machine: a server under test is pinned to core 0 (taskset) and wrk and the sink to
core 1, so the server has a core to itself. With two replicas they are pinned to cores 0 and 1 and wrk
and the sink float: the second replica shares its core with the load generator, so the ratio is a floor
on what two replicas on separate machines would give.

Requests are self-contained 2026-07-28 POSTs (no session), so any replica can answer any request.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

HERE = Path(__file__).resolve().parent
VERSION = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": VERSION, "io.modelcontextprotocol/clientCapabilities": {}}
REQUESTS: dict[str, dict[str, Any]] = {
    "tools/list": {"method": "tools/list", "params": {"_meta": META}},
    "get_extraction": {
        "method": "tools/call",
        "params": {"name": "get_extraction", "arguments": {"task_id": "bench-task"}, "_meta": META},
    },
}
LATENCY_TARGET = 1.3  # ours within 1.3x the floor's latency


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pinned(cores: str | None, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cores, *cmd] if cores is not None and shutil.which("taskset") else cmd


@contextmanager
def _process(cmd: list[str], env: dict[str, str], health: str) -> Iterator[None]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(health, timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} did not come up")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def ours(base_url: str, state_dir: Path, core: str | None) -> Iterator[str]:
    port = _port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        MUSICGPT_API_KEY="benchmark-key",
        MUSICGPT_BASE_URL=base_url,
        MUSICGPT_MCP_STATE_DIR=str(state_dir),
        MUSICGPT_MCP_LOG_LEVEL="WARNING",
        MUSICGPT_MCP_SERVER_SECRET="benchmark-secret-benchmark-secret-benchmark",
        # MusicGPT's 200 status calls a minute per key would cap get_extraction at 3.3 a second: the sink
        # has no such limit, and the figure is the server's own capacity.
        MUSICGPT_MCP_STATUS_CALLS_PER_MINUTE="1000000",
    )
    cmd = _pinned(core, [sys.executable, "-m", "musicgpt_mcp", "--transport", "http", "--port", str(port)])
    with _process(cmd, env, f"http://127.0.0.1:{port}/healthz"):
        yield f"http://127.0.0.1:{port}/mcp"


@contextmanager
def floor(base_url: str, core: str | None) -> Iterator[str]:
    port = _port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    cmd = _pinned(core, [sys.executable, str(HERE / "floor_http.py"), str(port), base_url])
    with _process(cmd, env, f"http://127.0.0.1:{port}/healthz"):
        yield f"http://127.0.0.1:{port}/mcp"


def _script(request: str, folder: Path) -> Path:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, **REQUESTS[request]})
    method = REQUESTS[request]["method"]
    name = REQUESTS[request]["params"].get("name")
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": method,
        **({"Mcp-Name": name} if name else {}),
    }
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    # A reply that is not a result (an error, a refused Host) counts as an error, not as throughput.
    # Each wrk thread runs its own copy of the script: done() adds up the threads' counts.
    lines += [
        "threads = {}",
        "setup = function(thread) table.insert(threads, thread) end",
        "errors = 0",
        "response = function(status, headers, body)",
        "  local ok = status == 200 and string.find(body, '\"result\"', 1, true)",
        "  if not ok or string.find(body, '\"isError\":true', 1, true) then errors = errors + 1 end",
        "end",
        "done = function(summary, latency, requests)",
        "  local bad = 0",
        '  for _, t in ipairs(threads) do bad = bad + (t:get("errors") or 0) end',
        '  io.write(string.format("BAD %d\\n", bad))',
        "end",
    ]
    path = folder / f"{request.replace('/', '_')}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(urls: list[str], request: str, connections: int, seconds: float, core: str | None) -> Load:
    """Load each URL with `connections` / len(urls) connections at once (a load balancer's even share)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = _script(request, Path(tmp))
        per = max(1, connections // len(urls))
        procs = [
            subprocess.Popen(
                _pinned(
                    core,
                    [
                        "wrk",
                        f"-t{min(2, per)}",
                        f"-c{per}",
                        f"-d{max(1, round(seconds))}s",
                        "--latency",
                        "--timeout",
                        "30s",
                        "-s",
                        str(script),
                        url,
                    ],
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for url in urls
        ]
        outputs = [p.communicate(timeout=seconds + 60)[0] for p in procs]
    for out in outputs:
        if "Requests/sec" not in out:
            raise RuntimeError(f"wrk failed: {out}")
    loads = [_parse(out) for out in outputs]
    return Load(
        rps=sum(x.rps for x in loads),
        p50_ms=max(x.p50_ms for x in loads),
        p99_ms=max(x.p99_ms for x in loads),
        errors=sum(x.errors for x in loads),
    )


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def _parse(out: str) -> Load:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = int(re.search(r"BAD (\d+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = bad + (int(non2xx.group(1)) if non2xx else 0)
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Load(rps=rps, p50_ms=p50, p99_ms=p99, errors=errors)


def measure(base_url: str, work: Path, concurrency: tuple[int, ...], seconds: float) -> list[dict[str, Any]]:
    """Every figure as a plain dict (benchmarks/run.py turns them into rows)."""
    rows: list[dict[str, Any]] = []
    single_core = "0", "1"  # the server's core, the load generator's
    for request in REQUESTS:
        for connections in concurrency:
            with ExitStack() as stack:
                ours_url = stack.enter_context(ours(base_url, work / "state-http", single_core[0]))
                wrk([ours_url], request, connections, 1, single_core[1])  # warm-up
                mine = wrk([ours_url], request, connections, seconds, single_core[1])
            with floor(base_url, single_core[0]) as floor_url:
                wrk([floor_url], request, connections, 1, single_core[1])
                base = wrk([floor_url], request, connections, seconds, single_core[1])
            rows.append({"request": request, "connections": connections, "ours": mine, "floor": base})
    biggest = max(concurrency)
    with ExitStack() as stack:
        one = stack.enter_context(ours(base_url, work / "state-replicas", "0"))
        wrk([one], "get_extraction", biggest, 1, None)
        single = wrk([one], "get_extraction", biggest, seconds, None)
        two = stack.enter_context(ours(base_url, work / "state-replicas", "1"))
        wrk([one, two], "get_extraction", biggest, 1, None)
        double = wrk([one, two], "get_extraction", biggest, seconds, None)
    rows.append({"request": "replicas", "connections": biggest, "ours": double, "floor": single})
    return rows
