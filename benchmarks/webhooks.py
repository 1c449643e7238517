"""Waiting at scale, polled and woken (issue 21): MusicGPT status calls per job, and how long after a job's end its
waiter learns of it, for 10, 100 and 1,000 concurrent jobs, with the server polling MusicGPT and with MusicGPT's
webhook waking it.

    uv run python benchmarks/webhooks.py                          # 10, 100 and 1,000 jobs of 20 s, both ways
    uv run python benchmarks/webhooks.py --jobs 10 --seconds 5    # a quick look

The MusicGPT double is the sandbox (musicgpt_mcp.sandbox), in this process so that its count of status calls and
its jobs' start times can be read: a job ends exactly `--seconds` after it arrived, and is then POSTed to its
webhook twice, as MusicGPT does. The server is `musicgpt-mcp --transport http` in a process of its own (SQLite
ledger, header sign-in), pinned to core 0 with `taskset`; this process (the callers and the double) to core 1.
MusicGPT's per-key limits stay in force (60 submits and 200 status calls a minute): the callers bring 50 jobs a
key, as 50 users of one hosted key would. Each job is waited on by its own caller with get_extraction
(wait_seconds=50, again until done), and its lateness is when that answer arrived less when the job ended, on one
clock (the double's). Webhooks: MUSICGPT_MCP_PUBLIC_URL is the server's loopback URL, where the double delivers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2

from musicgpt_mcp.hooks import hook_prefix
from musicgpt_mcp.sandbox import Sandbox

HERE = Path(__file__).resolve().parent
VERSION = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": VERSION, "io.modelcontextprotocol/clientCapabilities": {}}
JOBS_PER_KEY = 50
SECRET = "benchmark-webhooks-secret-0123456789abcdef"
# Submits in flight at once: a host's users do not all press the button in the same millisecond.
SUBMITTING = 50


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pinned(core: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", core, *cmd] if shutil.which("taskset") else cmd


@contextmanager
def server(sandbox: Sandbox, state_dir: Path, webhooks: bool) -> Iterator[str]:
    """`musicgpt-mcp --transport http` against the double; its MCP URL."""
    port = _port()
    url = f"http://127.0.0.1:{port}/mcp"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        MUSICGPT_BASE_URL=sandbox.base_url,
        MUSICGPT_MCP_AUTH="header",
        MUSICGPT_MCP_SERVER_SECRET=SECRET,
        MUSICGPT_MCP_STATE_DIR=str(state_dir),
        MUSICGPT_MCP_STORAGE_HOSTS=sandbox.netloc,
        MUSICGPT_MCP_MAX_JOBS_PER_HOUR="100000",
        MUSICGPT_MCP_LOG_LEVEL="WARNING",
    )
    if webhooks:
        env["MUSICGPT_MCP_PUBLIC_URL"] = url
    cmd = _pinned("0", [sys.executable, "-m", "musicgpt_mcp", "--transport", "http", "--port", str(port)])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not come up")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=90)


async def call(http: httpx2.AsyncClient, url: str, key: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One self-contained 2026-07-28 tools/call; its structured result."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": META},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
        "X-MusicGPT-Api-Key": key,
    }
    response = await http.post(url, json=body, headers=headers)
    response.raise_for_status()
    if response.headers.get("content-type", "").startswith("application/json"):
        result = response.json()["result"]
    else:  # an event stream: the result is its last message
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        result = json.loads(data[-1])["result"]
    if result.get("isError"):
        raise RuntimeError(f"{tool} failed: {result['content'][0]['text']}")
    return dict(result["structuredContent"])


async def run_jobs(url: str, jobs: int) -> dict[str, float]:
    """Submit `jobs` songs and wait on each; when (monotonic) each waiter learnt its job ended, by task ID."""
    answered: dict[str, float] = {}
    keys = [f"bench-key-{n:04d}-0123456789" for n in range(math.ceil(jobs / JOBS_PER_KEY))]
    submitting = anyio.Semaphore(SUBMITTING)
    limits = httpx2.Limits(max_connections=jobs + 50, max_keepalive_connections=jobs + 50)

    async def one(http: httpx2.AsyncClient, n: int) -> None:
        key = keys[n // JOBS_PER_KEY]
        song = {"audio_url": f"https://example.com/{n}.mp3"}
        async with submitting:
            task = (await call(http, url, key, "extract_stems", song))["task_id"]
        status: dict[str, Any] = {"done": False}
        while not status["done"]:
            status = await call(http, url, key, "get_extraction", {"task_id": task, "wait_seconds": 50})
        if not status["succeeded"]:
            raise RuntimeError(f"job {task} did not succeed: {status}")
        answered[task] = time.monotonic()

    async with httpx2.AsyncClient(timeout=180, limits=limits) as http, anyio.create_task_group() as tg:
        for n in range(jobs):
            tg.start_soon(one, http, n)
    return answered


def measure(sandbox: Sandbox, work: Path, jobs: int, seconds: int, webhooks: bool) -> dict[str, Any]:
    sandbox.state.reset()
    sandbox.state.eta = seconds
    with server(sandbox, work / f"state-{jobs}-{'hooks' if webhooks else 'poll'}", webhooks) as url:
        sandbox.state.webhook_urls = (hook_prefix(url),) if webhooks else ()
        started = time.monotonic()
        answered = anyio.run(run_jobs, url, jobs)
        took = time.monotonic() - started
        time.sleep(1.0)  # the last deliveries' second copies
    ends = {job.task_id: job.created + seconds for job in sandbox.state.jobs.values()}
    late = sorted(answered[task] - end for task, end in ends.items())
    refused = [d for d in sandbox.state.webhooks if d.status is None or not 200 <= d.status < 300]
    return {
        "mode": "webhooks" if webhooks else "polling",
        "jobs": jobs,
        "job_seconds": seconds,
        "status_calls": sandbox.state.status_calls,
        "status_calls_per_job": round(sandbox.state.status_calls / jobs, 3),
        "late_p50_s": round(statistics.median(late), 2),
        "late_p99_s": round(late[min(len(late) - 1, round(0.99 * (len(late) - 1)))], 2),
        "late_max_s": round(late[-1], 2),
        "deliveries": len(sandbox.state.webhooks),
        "deliveries_not_2xx": len(refused),
        "run_seconds": round(took, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seconds", type=int, default=20, help="how long each job takes at the double")
    parser.add_argument("--modes", nargs="+", choices=("polling", "webhooks"), default=["polling", "webhooks"])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "webhooks.json")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a thousand waiters hold a thousand connections
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Sandbox(eta=args.seconds, accept_any_key=True) as sandbox:
        if shutil.which("taskset"):
            os.sched_setaffinity(0, {1})
        for jobs in args.jobs:
            for webhooks in [mode == "webhooks" for mode in args.modes]:
                row = measure(sandbox, Path(tmp), jobs, args.seconds, webhooks)
                rows.append(row)
                print(
                    f"{row['mode']:>8} {jobs:>5} jobs: {row['status_calls_per_job']:>5} status calls a job, "
                    f"late p50 {row['late_p50_s']} s, p99 {row['late_p99_s']} s, max {row['late_max_s']} s "
                    f"({row['deliveries']} deliveries, {row['deliveries_not_2xx']} not 2xx; {row['run_seconds']} s)",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
