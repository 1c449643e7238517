"""The README a newcomer reads (issue 23): short, with a table of contents, links that lead somewhere, and
no number in it that the code does not back. Operator, benchmark and development material lives in docs/."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from musicgpt_mcp import quotes, summaries
from musicgpt_mcp.catalog import DEFAULT_STEMS, STEMS
from musicgpt_mcp.envvars import ENV_VARS
from musicgpt_mcp.ledger.base import DAY, HOUR
from musicgpt_mcp.models import ExtractionSubmitted
from musicgpt_mcp.musicgpt import contract
from musicgpt_mcp.tools import studio
from musicgpt_mcp.tools.get_extraction import get_extraction

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = [README, REPO / "SECURITY.md", *sorted((REPO / "docs").glob("*.md"))]


def default_of(name: str) -> str:
    return next(v.default for v in ENV_VARS if v.name == name)


def prose(text: str) -> str:
    """The README without what is not a claim: code blocks, inline code, link targets, the stem table."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"^\| `[a-z_]+` \| [^|]+ \|$", "", text, flags=re.MULTILINE)
    text = re.sub(r"^\d+\. ", "", text, flags=re.MULTILINE)  # a numbered list's markers
    return re.sub(r"`[^`]*`", "", text)


def backticked_numbers(text: str) -> list[str]:
    return re.findall(r"`(\d+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))


# Every number the README states outside code, and what makes it true. A number not listed here fails the
# test: check it against the code here, or drop it from the README.
CHECKS: dict[str, Callable[[], bool]] = {
    "18": lambda: len(STEMS) - 5 == 18,  # "vocals, drums, bass, guitar, piano and 18 more"
    "3.11": lambda: tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11",
    "400": lambda: True,  # the bundle's size: tests/test_bundle.py::test_readme_states_the_bundle_size
    # "uploaded 120 MB of 480 MB": the progress text's shape, as extract_stems writes it.
    "120": lambda: summaries.size(120 * 2**20) == "120.0 MB" and _uploads_say_sent_of_total(),
    "480": lambda: summaries.size(480 * 2**20) == "480.0 MB" and _uploads_say_sent_of_total(),
    # "about 20 s left" (the progress text's shape) and "at most 20 an hour" (uploads from the view)
    "20": lambda: "about {max(1, round(remaining))} s left" in _source("waiting.py") and studio.UPLOADS_PER_HOUR == 20,
    "30": lambda: default_of("MUSICGPT_MCP_MAX_JOBS_PER_HOUR") == "30" and quotes.QUOTE_TTL == 30 * 60,
    # the wait cap's default, and the largest stem the view hands the host as bytes rather than a link
    "50": lambda: default_of("MUSICGPT_MCP_MAX_WAIT") == "50" and "EMBED_LIMIT = 50 * 1024 * 1024;" in _player(),
    "401": lambda: "MusicGPT rejected the API key (HTTP 401" in _source("musicgpt/errors.py"),
    "24": lambda: default_of("MUSICGPT_MCP_REUSE_HOURS") == "24" and DAY == 24 * HOUR,
    "-1": lambda: "-1 when unknown" in str(ExtractionSubmitted.model_fields["eta"].description),
    "0": lambda: inspect.signature(get_extraction).parameters["wait_seconds"].default == 0,  # "0 (default) just looks"
}


def _uploads_say_sent_of_total() -> bool:
    return "uploaded {summaries.size(sent)} of {summaries.size(total)}" in _source("tools/extract_stems.py")


def _player() -> str:
    return _source("player/player.html")


def _source(module: str) -> str:
    return (REPO / "musicgpt_mcp" / module).read_text()


def test_the_readme_is_short_and_leads_with_contents() -> None:
    text = README.read_text()
    assert len(text.encode()) < 30_000
    contents = text[text.index("**Contents**") : text.index("\n## ")]
    linked = set(re.findall(r"\]\(#([a-z0-9-]+)\)", contents))
    headings = {slug(h) for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)}
    assert headings <= linked | {"stems"}, f"sections missing from the contents: {headings - linked}"
    for guide in ("hosting", "performance", "development"):
        assert f"](docs/{guide}.md)" in contents
    assert "## Hosting" not in text and "## Performance" not in text and "## Development" not in text


def test_the_hosting_guide_and_benchmarks_live_in_docs() -> None:
    hosting = (REPO / "docs" / "hosting.md").read_text()
    assert "MUSICGPT_MCP_AUTH" in hosting and "Replicas" in hosting and "musicgpt-mcp sandbox --port" in hosting
    performance = (REPO / "docs" / "performance.md").read_text()
    assert "wrk" in performance.split("Everything runs on loopback")[0], "the benchmarks' tools come first"


def test_the_performance_table_is_the_reference_run() -> None:
    shown = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--show", "benchmarks/reference-run.json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    table = "\n".join(line for line in shown.splitlines() if line.startswith("|"))
    assert table.startswith("| figure |")
    assert table in (REPO / "docs" / "performance.md").read_text()


def test_the_readme_states_what_it_costs_and_where_to_look() -> None:
    text = README.read_text()
    section = text[text.index("## What it costs") : text.index("\n## ", text.index("## What it costs") + 1)]
    for link in ("https://musicgpt.com/api-dashboard", "https://musicgpt.com/api)", "https://docs.musicgpt.com/"):
        assert link in section
    assert "credit_estimate" in section and "conversion_cost" in section and "made up" in section


def test_every_number_in_the_readme_is_backed() -> None:
    found = set(re.findall(r"(?<![\w.#/-])-?\d+(?:\.\d+)?(?![\w/])", prose(README.read_text())))
    unbacked = found - set(CHECKS)
    assert not unbacked, f"numbers in the README that no test backs (check them in CHECKS, or drop them): {unbacked}"
    failing = [number for number in found if not CHECKS[number]()]
    assert not failing, f"numbers in the README the code contradicts: {failing}"


def test_the_readme_names_the_default_stems() -> None:
    assert f"MusicGPT's default set ({', '.join(DEFAULT_STEMS)})" in README.read_text()


def test_defaults_in_the_configuration_tables_are_the_servers() -> None:
    """A default written as a number (`50`, `4096`) must be the one the server uses."""
    rows = [line for doc in (README, REPO / "docs" / "hosting.md") for line in doc.read_text().splitlines()]
    checked = 0
    for line in rows:
        match = re.match(r"^\| `(MUSICGPT_[A-Z_]+)` \| `(\d+)` \|", line)
        if match:
            assert default_of(match.group(1)) == match.group(2), line
            checked += 1
    assert checked >= 5
    assert contract.ASSUMED_CREDITS_PER_STEM > 0  # the guess stays in one place (the contract), not in the README


def test_every_variable_is_in_a_configuration_table() -> None:
    tables = README.read_text() + (REPO / "docs" / "hosting.md").read_text()
    for var in ENV_VARS:
        assert re.search(rf"^\|\s*`{var.name}`\s*\|", tables, flags=re.MULTILINE), f"{var.name} is in no table"


def test_links_between_the_documents_resolve() -> None:
    broken = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
                broken.append(f"{doc.name}: {target}")
    assert not broken, broken


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(file: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", file.read_text(), flags=re.MULTILINE)}


def test_the_reference_states_the_studios_limits() -> None:
    from musicgpt_mcp import uploads

    text = " ".join((REPO / "docs" / "reference.md").read_text().split())
    assert f"A quote lapses after {round(quotes.QUOTE_TTL / 60)} minutes." in text
    assert f"At most {uploads.MAX_VIEW_UPLOAD // 2**20} MB a song and {studio.UPLOADS_PER_HOUR} uploads an hour" in text
