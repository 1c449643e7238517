"""The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in package.json) against
`musicgpt-mcp --transport http --sandbox`, started as an operator would.

Most of the suite's server scenarios call its own test tools, prompts and `test://` resources, so they
apply only to its reference server; docs/hosting.md lists them with the reason. The ones that apply to any
server with our capabilities run here, each must pass, and each must have checked something (a
scenario can pass with zero checks).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from .conftest import PYTHON, REPO, require_node_tools, subprocess_env

APPLICABLE = ("server-initialize", "ping", "tools-list", "resources-list", "prompts-list", "dns-rebinding-protection")
SUITE = REPO / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    bin_dir = require_node_tools()
    assert (bin_dir / "node").exists() and SUITE.exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [PYTHON, "-m", "musicgpt_mcp", "--transport", "http", "--sandbox", "--port", str(port)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(origin + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("musicgpt-mcp --transport http did not come up")
            time.sleep(0.1)
        yield origin + "/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        assert proc.stdout.read() == b"", "the HTTP server wrote to stdout"


@pytest.mark.parametrize("scenario", APPLICABLE)
def test_conformance_scenario(served: str, scenario: str, tmp_path: Path) -> None:
    node = REPO / "node_modules" / ".bin" / "node"  # Node 22 from npm: the suite needs fs.globSync
    proc = subprocess.run(
        [str(node), str(SUITE), "server", "--url", served, "--scenario", scenario, "-o", str(tmp_path)],
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )
    output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, output
    [report] = list(tmp_path.glob(f"server-{scenario}-*/checks.json"))
    checks = json.loads(report.read_text())
    assert checks, f"{scenario} checked nothing"
    assert all(check["status"] == "SUCCESS" for check in checks), checks
