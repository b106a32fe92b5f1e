"""Cold start: import + init of each handler module in a fresh process, as Lambda loads it.

Each sample is a new ``python`` process with the function's code directory and the layer on
PYTHONPATH (Lambda's order: /var/task, then /opt/python) and the environment the template gives
the function. Inside it, the clock covers ``import app`` plus the settings model's parse
(``SubmitSettings.from_environment()``...), which is what a cold start runs before the first
event; the interpreter's own start-up is the same for every variant and is left out. Every
module loads from bytecode, as on Lambda with the package `make build` ships (it compiles the
build): the measured code is compiled first, whatever PYTHONDONTWRITEBYTECODE says.

The baseline is a handler that imports only boto3 and a Powertools Logger, measured in the same
run, interleaved with the real handlers so drift hits every variant alike. A third variant adds
Powertools Tracer (with tracing disabled) to that baseline, to put a number on the choice of not
using it. One extra ``-X importtime`` run per variant attributes the time to packages.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    FUNCTIONS_DIR,
    LAYER_DIR,
    LAYER_REQUIREMENTS,
    BenchError,
    child_environment,
    median,
    python_path,
    run_json_child,
)
from bench.deployable import BLOCKER, importable_packages, undeployed_packages
from bench.template_info import HANDLERS, deployed_environment, functions
from local.template import load_template

# What the child runs: the timed part is the import of the handler module and the settings
# parse. It reports which heavy packages ended up loaded. Only deployable packages import.
CHILD_SCRIPT = (
    BLOCKER
    + """
import importlib, json, sys, time
settings = sys.argv[1]
started = time.perf_counter()
import app
imported = time.perf_counter()
if settings:
    module, name = settings.rsplit(".", 1)
    getattr(importlib.import_module(module), name).from_environment()
finished = time.perf_counter()
print(json.dumps({
    "import_ms": (imported - started) * 1000,
    "init_ms": (finished - started) * 1000,
    "modules": len(sys.modules),
    "loaded": {name: name in sys.modules for name in
               ("fal_client", "httpx", "aws_xray_sdk", "pydantic", "cryptography", "boto3")},
}))
"""
)

BASELINE_APP = '''"""Baseline handler: boto3 and a Powertools Logger, nothing else."""
import boto3
from aws_lambda_powertools import Logger

logger = Logger()


def lambda_handler(event, context):
    return boto3.__version__
'''

TRACER_APP = '''"""Baseline handler plus Powertools Tracer (tracing disabled, as in local runs)."""
import boto3
from aws_lambda_powertools import Logger, Tracer

logger = Logger()
tracer = Tracer()


def lambda_handler(event, context):
    return boto3.__version__
'''

# What the submit handler loads on first use rather than at init (pika_pipeline.fal.on_demand and
# SubmitService._read_request): imported up front by the "submit_eager" variant, the real submit
# handler with nothing deferred, which puts a number on what a cold container's first
# submission pays instead.
DEFERRED_BY_SUBMIT = ("pika_pipeline.submit.video_request", "pika_pipeline.fal.gateway")

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


@dataclass(frozen=True)
class Variant:
    name: str
    code_dir: Path
    settings: str  # "module.Class" whose from_environment() is part of init, or ""
    environment: dict[str, str]
    importable: frozenset[str]  # third-party top-level packages the deployed function has


@dataclass
class VariantResult:
    name: str
    init_ms: list[float] = field(default_factory=list)
    import_ms: list[float] = field(default_factory=list)
    loaded: dict[str, bool] = field(default_factory=dict)
    modules: int = 0
    by_package_ms: dict[str, float] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return median(self.init_ms)


@dataclass
class ColdStartResult:
    variants: dict[str, VariantResult]
    repeats: int
    tracer_install_bytes: int = 0  # aws-xray-sdk and its dependencies, as installed here

    def ratio(self, name: str, baseline: str = "baseline") -> float:
        return self.variants[name].median_ms / self.variants[baseline].median_ms


SETTINGS = {
    "SubmitFunction": "pika_pipeline.config.submit.SubmitSettings",
    "WebhookFunction": "pika_pipeline.config.recorder.WebhookSettings",
    "ReconcilerFunction": "pika_pipeline.config.reconciler.ReconcilerSettings",
}


def _variants(scratch: Path) -> list[Variant]:
    template = load_template()
    specs = functions(template)
    variants = []
    for short, logical in HANDLERS.items():
        if logical not in specs:
            raise BenchError(f"template.yaml has no {logical}")
        spec = specs[logical]
        code_dir = (FUNCTIONS_DIR.parent / spec.code_uri).resolve()
        env = deployed_environment(spec, template)
        importable = importable_packages(LAYER_REQUIREMENTS, code_dir / "requirements.txt")
        variants.append(Variant(short, code_dir, SETTINGS[logical], env, importable))
    base_env = deployed_environment(specs["WebhookFunction"], template)
    base_importable = importable_packages(LAYER_REQUIREMENTS)
    submit_app = (FUNCTIONS_DIR / "submit" / "app.py").read_text()
    eager_app = submit_app + "".join(f"\nimport {module}" for module in DEFERRED_BY_SUBMIT)
    for name, source in (
        ("baseline", BASELINE_APP),
        ("tracer", TRACER_APP),
        ("submit_eager", eager_app),
    ):
        code_dir = scratch / name
        code_dir.mkdir()
        (code_dir / "app.py").write_text(source)
        env = dict(base_env)
        importable = base_importable
        settings = ""
        if name == "tracer":
            env["POWERTOOLS_TRACE_DISABLED"] = "true"
            importable = importable | _tracer_packages()
        if name == "submit_eager":
            submit = next(v for v in variants if v.name == "submit")
            env, importable, settings = submit.environment, submit.importable, submit.settings
        variants.append(Variant(name, code_dir, settings, env, importable))
    return variants


def _tracer_packages() -> frozenset[str]:
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join(TRACER_DISTS))
        return importable_packages(requirements)


def _environment(variant: Variant) -> dict[str, str]:
    return child_environment(
        {
            **variant.environment,
            "PYTHONPATH": python_path(variant.code_dir, LAYER_DIR),
            "BENCH_NOT_DEPLOYED": ",".join(sorted(undeployed_packages(variant.importable))),
        }
    )


def _sample(variant: Variant, scratch: Path) -> dict[str, object]:
    return run_json_child(
        ["-c", CHILD_SCRIPT, variant.settings],
        env=_environment(variant),
        cwd=scratch,  # nothing importable here: `app` comes from PYTHONPATH only
        timeout=120,
    )


def _by_package(variant: Variant, scratch: Path) -> dict[str, float]:
    """Self import time per top-level package (ms), from one ``-X importtime`` run."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHILD_SCRIPT, variant.settings],
        capture_output=True,
        text=True,
        env=_environment(variant),
        cwd=scratch,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"importtime run of {variant.name} failed: {completed.stderr[-500:]}")
    lines = completed.stderr.splitlines()
    # Only what `import app` (and the settings import) loaded: everything after the
    # interpreter's own start-up, which ends with site's imports before the script runs.
    start = next((i for i, line in enumerate(lines) if line.rstrip().endswith("| site")), -1)
    totals: dict[str, float] = defaultdict(float)
    for line in lines[start + 1 :]:
        match = _IMPORTTIME.match(line)
        if match:
            root = match.group(4).split(".")[0]
            totals[root] += int(match.group(1)) / 1000
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def measure(repeats: int, *, warmup: int = 1) -> ColdStartResult:
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        scratch = Path(tmp)
        variants = _variants(scratch)
        for directory in {LAYER_DIR, *(v.code_dir for v in variants)}:
            if not compileall.compile_dir(directory, quiet=1):
                raise BenchError(f"{directory} does not compile")
        results = {v.name: VariantResult(v.name) for v in variants}
        for round_index in range(warmup + repeats):
            # Rotate the order each round so no variant always runs first.
            shift = round_index % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                sample = _sample(variant, scratch)
                if round_index < warmup:
                    continue  # warms the page cache
                result = results[variant.name]
                result.init_ms.append(float(str(sample["init_ms"])))
                result.import_ms.append(float(str(sample["import_ms"])))
                loaded = sample["loaded"]
                assert isinstance(loaded, dict)
                result.loaded = {str(k): bool(v) for k, v in loaded.items()}
                result.modules = int(str(sample["modules"]))
        for variant in variants:
            results[variant.name].by_package_ms = _by_package(variant, scratch)
    return ColdStartResult(results, repeats, tracer_install_bytes=_installed_bytes(TRACER_DISTS))


# What Tracer needs beyond Powertools itself (not in the layer today).
TRACER_DISTS = ("aws-xray-sdk", "wrapt")


def _installed_bytes(distributions: tuple[str, ...]) -> int:
    total = 0
    for name in distributions:
        try:
            files = importlib.metadata.files(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in files:
            path = Path(str(file.locate()))
            if path.is_file() and "__pycache__" not in path.parts:
                total += path.stat().st_size
    return total
