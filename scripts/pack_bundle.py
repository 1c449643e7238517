"""Build the MCP Bundle Claude Desktop installs with a double click: dist/musicgpt-mcp-<version>.mcpb.

    npm ci                                       # once: the pinned MCPB CLI (@anthropic-ai/mcpb, package.json)
    uv run python scripts/pack_bundle.py         # validate manifest.json, pack, print the size and SHA-256
    uv run python scripts/pack_bundle.py --release-url URL
                                                 # also print the MCP Registry package entry for that URL

The version has one source, musicgpt_mcp/__init__.py: this script refuses to pack when manifest.json's
version differs (it never rewrites the manifest). What goes into the bundle is decided by .mcpbignore.
Only the standard library is used, so plain `python3` runs it too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODE = REPO / "node_modules" / ".bin" / "node"  # Node 22 from npm, pinned in package.json
MCPB = REPO / "node_modules" / "@anthropic-ai" / "mcpb" / "dist" / "cli" / "cli.js"


class PackError(Exception):
    """Packing cannot go on; the message says why and what to do."""


def package_version() -> str:
    text = (REPO / "musicgpt_mcp" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, flags=re.MULTILINE)
    if match is None:
        raise PackError("musicgpt_mcp/__init__.py has no __version__ line.")
    return match.group(1)


def mcpb(*args: str) -> None:
    """Run the pinned MCPB CLI; its report goes to stderr, so stdout carries only this script's result."""
    if not NODE.exists() or not MCPB.exists():
        raise PackError("The pinned MCPB CLI is missing: run `npm ci` in the repository root.")
    done = subprocess.run([str(NODE), str(MCPB), *args], cwd=REPO, stdout=sys.stderr, check=False)  # noqa: S603
    if done.returncode != 0:
        raise PackError(f"`mcpb {args[0]}` failed (exit status {done.returncode}); its output is above.")


def pack(out_dir: Path) -> Path:
    version = package_version()
    manifest = json.loads((REPO / "manifest.json").read_text(encoding="utf-8"))
    if manifest["version"] != version:
        raise PackError(
            f"manifest.json says version {manifest['version']}, musicgpt_mcp/__init__.py says {version}: "
            "set manifest.json's version to the package's and pack again."
        )
    mcpb("validate", "manifest.json")
    target = out_dir.resolve() / f"musicgpt-mcp-{version}.mcpb"
    target.unlink(missing_ok=True)
    mcpb("pack", str(REPO), str(target))
    return target


def registry_entry(bundle: Path, url: str, version: str) -> dict[str, object]:
    """The `packages` entry server.json needs to list this bundle in the MCP Registry."""
    return {
        "registryType": "mcpb",
        "identifier": url,
        "version": version,
        "fileSha256": hashlib.sha256(bundle.read_bytes()).hexdigest(),
        "transport": {"type": "stdio"},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="Folder for the .mcpb (default: dist/).")
    parser.add_argument("--release-url", help="Where the .mcpb will be downloaded from (a release asset URL).")
    options = parser.parse_args()
    try:
        bundle = pack(options.out)
    except PackError as exc:
        print(f"pack_bundle: {exc}", file=sys.stderr)
        return 1
    data = bundle.read_bytes()
    print(bundle)
    print(f"size: {len(data)} bytes ({len(data) / 1000:.0f} kB)")
    print(f"sha256: {hashlib.sha256(data).hexdigest()}")
    if options.release_url:
        entry = registry_entry(bundle, options.release_url, package_version())
        print("server.json package entry:")
        print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
