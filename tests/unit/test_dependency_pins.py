"""Pinned once: the deployed layer and function install exactly the versions the tests ran."""

from __future__ import annotations

import tomllib

from local.template import REPO_ROOT


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            pins[name.split("[")[0].lower()] = version
    return pins


def test_every_deployed_requirement_is_pinned_to_the_projects_version() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = _pins(project["dependencies"])
    for path in (
        REPO_ROOT / "layers" / "shared" / "requirements.txt",
        REPO_ROOT / "functions" / "submit" / "requirements.txt",
        REPO_ROOT / "functions" / "reconciler" / "requirements.txt",
    ):
        for name, version in _pins(path.read_text().splitlines()).items():
            assert declared.get(name) == version, f"{path.name}: {name}=={version}"


def test_development_tools_are_pinned() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert _pins(project["optional-dependencies"]["dev"])
