"""The house's rules, read off the source (issue 22): small rooms, no circles, one place that speaks the SDK's
errors. The sandbox (a MusicGPT double, not the server) is left out."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "musicgpt_mcp"
MAX_FUNCTION_LINES = 60
MAX_CREATE_SERVER_LINES = 45
MAX_MODULE_LINES = 450
# Where the SDK's ToolError may be raised: the MCP surface. Below it, code raises its own Failures.
TOOL_ERROR_PLACES = ("tools/", "resources.py", "prompts.py", "errors.py")
SHARED_RUN = 6


def modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "sandbox" not in path.relative_to(PACKAGE).parts:
            yield path


def name_of(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, tree: ast.AST, known: set[str]) -> set[str]:
    """The package's modules `path` imports, at the top or inside functions."""
    me = name_of(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known and c != me}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_lazy_imports_included() -> None:
    trees = {path: ast.parse(path.read_text()) for path in modules()}
    known = {name_of(path) for path in trees}
    graph: dict[str, set[str]] = defaultdict(set)
    for path, tree in trees.items():
        graph[name_of(path)] |= imported(path, tree, known)
    assert cycles(graph) == []


def test_functions_and_modules_are_small() -> None:
    too_long: list[str] = []
    for path in modules():
        source = path.read_text()
        where = path.relative_to(PACKAGE)
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                limit = MAX_CREATE_SERVER_LINES if node.name == "create_server" else MAX_FUNCTION_LINES
                if lines > limit:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {lines} lines")
    assert too_long == []


def test_tool_errors_are_raised_only_at_the_surface() -> None:
    elsewhere: list[str] = []
    for path in modules():
        where = str(path.relative_to(PACKAGE))
        if where.startswith(TOOL_ERROR_PLACES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id == "ToolError":
                    elsewhere.append(f"{where}:{node.lineno}")
    assert elsewhere == []


def _code_lines(path: Path) -> list[str]:
    """The file's lines as `duplicates` compares them: white space folded; blank lines, comments and lone
    punctuation passed over. Import lists count: `duplicates` reports two engines importing the same long list."""
    kept = []
    for line in path.read_text().splitlines():
        text = " ".join(line.split())
        if not text or text.startswith("#") or re.fullmatch(r"[()\[\]{},:\"']+", text):
            continue
        kept.append(text)
    return kept


@pytest.mark.parametrize(("one", "other"), [("ledger/sqlite.py", "ledger/postgres.py")])
def test_the_ledger_engines_share_no_run_of_six_lines(one: str, other: str) -> None:
    """What both engines do alike is written once (the shared SQL and row codec); each keeps its dialect."""
    a, b = _code_lines(PACKAGE / one), _code_lines(PACKAGE / other)
    runs = {tuple(a[i : i + SHARED_RUN]) for i in range(len(a) - SHARED_RUN + 1)}
    shared = [b[i : i + SHARED_RUN] for i in range(len(b) - SHARED_RUN + 1) if tuple(b[i : i + SHARED_RUN]) in runs]
    assert shared == []
