"""Checks what `make build` produced: every native extension is an arm64 (aarch64) binary, every
Python module ships its bytecode, and each function and layer is far under Lambda's size limit.
Prints the sizes; exits 1 on a problem.

Run after `make build` (sam build, then compileall):
``python -m local.build_report [.aws-sam/build]``.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from local.template import REPO_ROOT, load_template

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
# "Far under": a function with its layers may use a quarter of the limit, so a dependency that
# balloons fails the build here long before a deployment would.
DEPLOYED_BUDGET = LAMBDA_UNZIPPED_LIMIT // 4
# The shared layer alone: every function (the webhook's cold start too) loads it; the heavy
# dependencies ship with the functions that need them (layers/shared/requirements.txt).
LAYER_BUDGET = 25 * 2**20
EM_AARCH64 = 183  # the ELF header's e_machine for arm64
ELF_MACHINES = {3: "x86", 62: "x86_64", 40: "arm", EM_AARCH64: "aarch64"}
# PEP 552 flags of a .pyc that the runtime loads without looking at its source's timestamp.
UNCHECKED_HASH = 0b01


@dataclass
class BuildReport:
    sizes: dict[str, int] = field(default_factory=dict)
    layers: frozenset[str] = frozenset()
    wrong_architecture: list[str] = field(default_factory=list)
    native_extensions: int = 0
    modules: int = 0
    without_bytecode: list[str] = field(default_factory=list)

    @property
    def deployed_sizes(self) -> dict[str, int]:
        """Each function with its layers (every function gets them through Globals)."""
        layers = sum(size for name, size in self.sizes.items() if name in self.layers)
        return {n: s + layers for n, s in self.sizes.items() if n not in self.layers}

    @property
    def problems(self) -> list[str]:
        found = [f"{path} is not an aarch64 binary" for path in self.wrong_architecture]
        if self.without_bytecode:
            found.append(
                f"{len(self.without_bytecode)} of {self.modules} modules ship no bytecode that "
                f"Lambda's Python loads as it is (e.g. {self.without_bytecode[0]}): every cold "
                "start would compile them; run compileall as `make build` does"
            )
        found += [
            f"layer {name} is {size / 2**20:.1f} MiB unzipped, over its "
            f"{LAYER_BUDGET / 2**20:.1f} MiB budget"
            for name, size in self.sizes.items()
            if name in self.layers and size > LAYER_BUDGET
        ]
        found += [
            f"{name} with its layers is {size / 2**20:.1f} MiB unzipped, over "
            f"{DEPLOYED_BUDGET / 2**20:.1f} MiB (a quarter of Lambda's limit)"
            for name, size in self.deployed_sizes.items()
            if size > DEPLOYED_BUDGET
        ]
        return found


def elf_machine(path: Path) -> str | None:
    with path.open("rb") as handle:
        header = handle.read(20)
    if header[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINES.get(machine, str(machine))


def ships_bytecode(source: Path) -> bool:
    """A .pyc for this interpreter's version beside the module, valid without its timestamp."""
    compiled = Path(importlib.util.cache_from_source(str(source)))
    if not compiled.is_file():
        return False
    with compiled.open("rb") as handle:
        header = handle.read(8)
    return (
        header[:4] == importlib.util.MAGIC_NUMBER
        and int.from_bytes(header[4:8], "little") == UNCHECKED_HASH
    )


def inspect(build_dir: Path) -> BuildReport:
    resources = load_template()["Resources"]
    report = BuildReport(
        layers=frozenset(
            name for name, r in resources.items() if r["Type"] == "AWS::Serverless::LayerVersion"
        )
    )
    for artifact in sorted(p for p in build_dir.iterdir() if p.is_dir()):
        files = [p for p in artifact.rglob("*") if p.is_file()]
        report.sizes[artifact.name] = sum(p.stat().st_size for p in files)
        for path in files:
            if ".so" in path.suffixes and (machine := elf_machine(path)) is not None:
                report.native_extensions += 1
                if machine != "aarch64":
                    report.wrong_architecture.append(f"{path.relative_to(build_dir)} ({machine})")
            elif path.suffix == ".py":
                report.modules += 1
                if not ships_bytecode(path):
                    report.without_bytecode.append(str(path.relative_to(build_dir)))
    return report


def main() -> int:
    build_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / ".aws-sam" / "build"
    report = inspect(build_dir)
    deployed = report.deployed_sizes
    for name, size in report.sizes.items():
        line = f"  {name:<20} {size / 2**20:8.1f} MiB unzipped"
        if name in deployed:
            line += f", {deployed[name] / 2**20:.1f} MiB with its layers"
        print(line)
    all_arm64 = not report.wrong_architecture
    print(f"  native extensions: {report.native_extensions}, all aarch64: {all_arm64}")
    compiled = report.modules - len(report.without_bytecode)
    print(
        f"  modules with bytecode (cpython-{sys.version_info[0]}{sys.version_info[1]}): "
        f"{compiled} of {report.modules}"
    )
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
