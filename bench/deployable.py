"""Which top-level packages a deployed function can import: its requirements and the layer's,
with their dependencies, plus what the Lambda Python runtime itself provides (boto3 and its
dependencies) and the standard library.

The benchmark's interpreter has more installed (test and dev tools). Some libraries import
optional extras when they find them (httpx loads click, rich and pygments for its command line),
so cold starts are measured with everything else made unimportable, as on Lambda.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement

# The Lambda Python runtime's own packages (/var/runtime).
RUNTIME_DISTRIBUTIONS = ("boto3",)


def importable_packages(*requirement_files: Path) -> frozenset[str]:
    names: list[str] = list(RUNTIME_DISTRIBUTIONS)
    for path in requirement_files:
        if path.is_file():
            names += [
                Requirement(line).name
                for line in (raw.split("#", 1)[0].strip() for raw in path.read_text().splitlines())
                if line
            ]
    packages: set[str] = set()
    for distribution in _closure(names):
        packages |= _top_level(distribution)
    return frozenset(packages)


def _closure(names: list[str]) -> list[importlib.metadata.Distribution]:
    seen: dict[str, importlib.metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here (an optional dependency): not importable there either
        seen[name] = distribution
        for spec in distribution.requires or ():
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(seen.values())


def _top_level(distribution: importlib.metadata.Distribution) -> set[str]:
    names = set()
    for file in distribution.files or ():
        first = file.parts[0]
        if first.endswith((".dist-info", ".egg-info", ".pth")) or first in ("..", "__pycache__"):
            continue
        names.add(first.split(".", 1)[0])  # a package directory, or a module's file name
    return names


def undeployed_packages(importable: frozenset[str]) -> frozenset[str]:
    """Top-level packages installed here that the deployed function would not have."""
    installed: set[str] = set()
    for distribution in importlib.metadata.distributions():
        installed |= _top_level(distribution)
    return frozenset(installed - importable)


# Run at the start of the measured child, before the clock starts: makes the packages named in
# BENCH_NOT_DEPLOYED unimportable, as they are on Lambda.
BLOCKER = """
import importlib.abc, os, sys
_NOT_DEPLOYED = frozenset(os.environ["BENCH_NOT_DEPLOYED"].split(","))
class _NotDeployed(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _NOT_DEPLOYED:
            raise ModuleNotFoundError(f"No module named {name!r} (not deployed)", name=name)
sys.meta_path.insert(0, _NotDeployed())
"""
