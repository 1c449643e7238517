"""The release metadata: server.json for the MCP Registry, versions in step, the README's ownership line."""

from __future__ import annotations

import json
import re
import tomllib

import jsonschema
import pytest

from musicgpt_mcp import __version__
from musicgpt_mcp.envvars import ENV_VARS

from .conftest import REPO

# The MCP Registry schema server.json follows, kept in the repository (see tests/data/README.md).
SCHEMA = REPO / "tests" / "data" / "server.schema.2025-12-11.json"


@pytest.fixture(scope="module")
def server_json() -> dict[str, object]:
    return json.loads((REPO / "server.json").read_text())


def test_server_json_validates_against_registry_schema(server_json: dict[str, object]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(server_json), key=str)
    assert not errors, [e.message for e in errors]
    assert server_json["$schema"] == schema["$id"]


def test_versions_are_in_step(server_json: dict[str, object]) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]  # taken from musicgpt_mcp/__init__.py
    assert server_json["version"] == __version__
    packages = server_json["packages"]
    assert isinstance(packages, list)
    [package] = packages
    assert package["version"] == __version__
    assert package["identifier"] == pyproject["project"]["name"] == "musicgpt-mcp"
    assert package["registryType"] == "pypi" and package["runtimeHint"] == "uvx"
    assert package["transport"] == {"type": "stdio"}
    env = {v["name"]: v for v in package["environmentVariables"]}
    assert env["MUSICGPT_API_KEY"]["isSecret"] is True
    assert set(env) <= {v.name for v in ENV_VARS}


def test_readme_claims_the_registry_name(server_json: dict[str, object]) -> None:
    readme = (REPO / "README.md").read_text()
    assert f"<!-- mcp-name: {server_json['name']} -->" in readme
    assert len(str(server_json["description"])) <= 100


def test_readme_stem_table_matches_the_catalog() -> None:
    from musicgpt_mcp.catalog import STEM_DESCRIPTIONS

    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+?) \|$", readme, flags=re.MULTILINE))
    assert rows == STEM_DESCRIPTIONS


def test_nothing_in_the_repository_reaches_outside_the_checkout() -> None:
    """A fresh clone must be complete: no file may read a folder beside the checkout."""
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    outside = re.compile(rb"\.\./shared|REPO\.parent|parent\s*/\s*[\"']shared")
    offenders = []
    for name in filter(None, tracked):
        path = REPO / name.decode()
        if path.suffix in {".lock"} or not path.is_file():
            continue
        data = path.read_bytes()
        if outside.search(data):
            offenders.append(name.decode())
    assert not offenders, f"these files refer to something outside the checkout: {offenders}"
