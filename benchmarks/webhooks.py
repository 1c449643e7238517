"""Waiting at scale, polled and woken (issue 21): MusicGPT status calls per job, and how long after a job's end its
waiter learns of it, for 10, 100 and 1,000 concurrent jobs, with the server polling MusicGPT and with MusicGPT's
webhook waking it.

    uv run python benchmarks/webhooks.py                          # 10, 100 and 1,000 jobs of 20 s, both ways
    uv run python benchmarks/webhooks.py --jobs 10 --seconds 5    # a quick look

The MusicGPT double is the sandbox (musicgpt_mcp.sandbox) in a process of its own, which reports its count of
status calls and when each job arrived: a job ends exactly `--seconds` after it arrived, and is then POSTed to
its webhook twice, as MusicGPT does. The server is `musicgpt-mcp --transport http` (SQLite ledger, header
sign-in) in another, pinned to core 0 with `taskset`; the callers (this process) and the double share core 1.
MusicGPT's per-key limits stay in force (60 submits and 200 status calls a minute): the callers bring 50 jobs a
key, as 50 users of one hosted key would. Each job is waited on by its own caller with get_extraction
(wait_seconds=50, again until done); its lateness is when that answer arrived less when the job ended, both on
the system's monotonic clock, which every process shares. Webhooks: MUSICGPT_MCP_PUBLIC_URL is the server's
loopback URL, where the double delivers.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
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

Pipe = Any  # multiprocessing's Connection

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
def server(double: Double, state_dir: Path, webhooks: bool) -> Iterator[str]:
    """`musicgpt-mcp --transport http` against the double; its MCP URL."""
    port = _port()
    url = f"http://127.0.0.1:{port}/mcp"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        MUSICGPT_BASE_URL=double.base_url,
        MUSICGPT_MCP_AUTH="header",
        MUSICGPT_MCP_SERVER_SECRET=SECRET,
        MUSICGPT_MCP_STATE_DIR=str(state_dir),
        MUSICGPT_MCP_STORAGE_HOSTS=double.netloc,
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

    async def one(http: httpx2.AsyncClient, key: str, n: int) -> None:
        song = {"audio_url": f"https://example.com/{n}.mp3"}
        async with submitting:
            task = (await call(http, url, key, "extract_stems", song))["task_id"]
        status: dict[str, Any] = {"done": False}
        while not status["done"]:
            status = await call(http, url, key, "get_extraction", {"task_id": task, "wait_seconds": 50})
        if not status["succeeded"]:
            raise RuntimeError(f"job {task} did not succeed: {status}")
        answered[task] = time.monotonic()

    async def caller(key: str, songs: range) -> None:
        # A connection pool a key, as each user's client has its own: one pool of a thousand connections costs
        # httpx a scan of all of them for every request, which here made the callers, not the server, the limit.
        limits = httpx2.Limits(max_connections=len(songs) + 5, max_keepalive_connections=len(songs) + 5)
        async with httpx2.AsyncClient(timeout=180, limits=limits) as http, anyio.create_task_group() as tg:
            for n in songs:
                tg.start_soon(one, http, key, n)

    async with anyio.create_task_group() as tg:
        for i, key in enumerate(keys):
            tg.start_soon(caller, key, range(i * JOBS_PER_KEY, min(jobs, (i + 1) * JOBS_PER_KEY)))
    return answered


def serve_double(pipe: Pipe) -> None:
    """The double's process: a sandbox on core 1, answering `reset` and `stats` from the benchmark."""
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    with Sandbox(accept_any_key=True) as sandbox:
        pipe.send((sandbox.base_url, sandbox.netloc))
        while (command := pipe.recv()) is not None:
            if command[0] == "reset":
                sandbox.state.reset()
                sandbox.state.eta, sandbox.state.webhook_urls = command[1], command[2]
                pipe.send(None)
            else:
                jobs = {job.task_id: job.created for job in sandbox.state.jobs.values()}
                hooks = [d.status for d in sandbox.state.webhooks]
                pipe.send((sandbox.state.status_calls, jobs, hooks))


class Double:
    """The sandbox in a process of its own, so that it does not share this process's interpreter lock."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(target=serve_double, args=(theirs,), daemon=True)
        self._process.start()
        self.base_url, self.netloc = self._pipe.recv()

    def reset(self, seconds: int, webhook_urls: tuple[str, ...]) -> None:
        self._pipe.send(("reset", seconds, webhook_urls))
        self._pipe.recv()

    def stats(self) -> tuple[int, dict[str, float], list[int | None]]:
        self._pipe.send(("stats",))
        calls, jobs, hooks = self._pipe.recv()
        return int(calls), dict(jobs), list(hooks)

    def close(self) -> None:
        self._pipe.send(None)
        self._process.join(timeout=10)


def measure(double: Double, work: Path, jobs: int, seconds: int, webhooks: bool) -> dict[str, Any]:
    double.reset(seconds, ())
    with server(double, work / f"state-{jobs}-{'hooks' if webhooks else 'poll'}", webhooks) as url:
        if webhooks:
            double.reset(seconds, (hook_prefix(url),))
        started = time.monotonic()
        answered = anyio.run(run_jobs, url, jobs)
        took = time.monotonic() - started
        time.sleep(1.0)  # the last deliveries' second copies
    calls, created, hooks = double.stats()
    late = sorted(answered[task] - (arrived + seconds) for task, arrived in created.items())
    return {
        "mode": "webhooks" if webhooks else "polling",
        "jobs": jobs,
        "job_seconds": seconds,
        "status_calls": calls,
        "status_calls_per_job": round(calls / jobs, 3),
        "late_p50_s": round(statistics.median(late), 2),
        "late_p99_s": round(late[min(len(late) - 1, round(0.99 * (len(late) - 1)))], 2),
        "late_max_s": round(late[-1], 2),
        "deliveries": len(hooks),
        "deliveries_not_2xx": sum(1 for status in hooks if status is None or not 200 <= status < 300),
        "run_seconds": round(took, 1),
    }


FIGURES = ("status_calls_per_job", "late_p50_s", "late_p99_s", "late_max_s")


def show(row: dict[str, Any]) -> str:
    return (
        f"{row['mode']:>8} {row['jobs']:>5} jobs: {row['status_calls_per_job']:>5} status calls a job, "
        f"late p50 {row['late_p50_s']} s, p99 {row['late_p99_s']} s, max {row['late_max_s']} s"
    )


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mode and number of jobs, the median of each figure over the runs, and its range."""
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["mode"], row["jobs"]), []).append(row)
    out = []
    for (mode, jobs), runs in grouped.items():
        medians = {f: round(statistics.median(r[f] for r in runs), 3) for f in FIGURES}
        ranges = {f"{f}_range": [min(r[f] for r in runs), max(r[f] for r in runs)] for f in FIGURES}
        out.append({"mode": mode, "jobs": jobs, "runs": len(runs), **medians, **ranges})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seconds", type=int, default=20, help="how long each job takes at the double")
    parser.add_argument("--modes", nargs="+", choices=("polling", "webhooks"), default=["polling", "webhooks"])
    parser.add_argument("--runs", type=int, default=3, help="runs of the whole matrix; medians are reported")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "webhooks.json")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a thousand waiters hold a thousand connections
    rows = []
    double = Double()
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for jobs in args.jobs:
                for webhooks in [mode == "webhooks" for mode in args.modes]:
                    row = measure(double, Path(tmp) / str(run), jobs, args.seconds, webhooks)
                    rows.append(row)
                    not_2xx = row["deliveries_not_2xx"]
                    print(f"run {run + 1}: {show(row)} ({row['deliveries']} deliveries, {not_2xx} not 2xx)", flush=True)
    double.close()
    medians = summary(rows)
    print(f"medians of {args.runs} runs:")
    for row in medians:
        print(show(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": os.cpu_count(), "medians": medians, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
