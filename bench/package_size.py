"""Deployment package sizes, from what ``sam build`` left in .aws-sam/build.

Sizes are unzipped bytes per artifact (``local.build_report.inspect``). Lambda's limit is 250 MB
unzipped for a function and all its layers together (AWS means 262,144,000 bytes = 250 MiB), so
each function is reported with the layers the template gives it. The build is not redone here;
source files whose content differs from the build's copy are listed, so a stale build shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import MIB
from bench.template_info import functions
from local.build_report import LAMBDA_UNZIPPED_LIMIT, inspect
from local.template import REPO_ROOT, load_template

LAYER_TARGET_BYTES = 25 * MIB


@dataclass
class PackageSizes:
    build_dir: Path
    artifacts: dict[str, int] = field(default_factory=dict)
    functions: dict[str, int] = field(default_factory=dict)  # function + its layers
    layers: dict[str, int] = field(default_factory=dict)
    stale_sources: list[str] = field(default_factory=list)
    unbuilt: list[str] = field(default_factory=list)  # in the template, not in the build
    missing: str = ""
    limit: int = LAMBDA_UNZIPPED_LIMIT


def _changed_sources(build_dir: Path, template: dict[str, Any]) -> list[str]:
    """Source files whose content differs from (or is missing in) the build."""
    changed = []
    for logical, resource in template["Resources"].items():
        kind = resource.get("Type")
        if kind == "AWS::Serverless::LayerVersion":
            source = REPO_ROOT / resource["Properties"]["ContentUri"]
            built = build_dir / logical / "python"
        elif kind == "AWS::Serverless::Function":
            source = REPO_ROOT / resource["Properties"]["CodeUri"]
            built = build_dir / logical
        else:
            continue
        if not built.is_dir():
            continue
        for path in sorted(source.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            counterpart = built / path.relative_to(source)
            if not counterpart.is_file() or counterpart.read_bytes() != path.read_bytes():
                changed.append(str(path.relative_to(REPO_ROOT)))
    return changed


def measure(build_dir: Path) -> PackageSizes:
    result = PackageSizes(build_dir=build_dir)
    if not build_dir.is_dir() or not any(p.is_dir() for p in build_dir.iterdir()):
        result.missing = f"{build_dir} has no build; run `make build` (sam build) first"
        return result
    result.artifacts = inspect(build_dir).sizes
    template = load_template()
    layer_ids = {
        logical
        for logical, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::LayerVersion"
    }
    result.layers = {name: size for name, size in result.artifacts.items() if name in layer_ids}
    globals_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    for logical in functions(template):
        if logical not in result.artifacts:
            result.unbuilt.append(logical)
            continue
        properties = template["Resources"][logical].get("Properties", {})
        layers = properties.get("Layers", globals_layers)
        refs = [layer["Ref"] for layer in layers if isinstance(layer, dict) and "Ref" in layer]
        result.functions[logical] = result.artifacts[logical] + sum(
            result.artifacts.get(ref, 0) for ref in refs
        )
    result.stale_sources = _changed_sources(build_dir, template)
    return result
