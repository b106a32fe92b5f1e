"""The benchmark's output: one row per figure (value, baseline, ratio, target, verdict), printed
as a table and written with the details, the machine and the method into docs/PERFORMANCE.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cold_start import ColdStartResult
from bench.common import MIB, median
from bench.cost import FAL_PRICE_PER_VIDEO, PRICES, PRICES_AS_OF, TARGET_SHARE, CostBreakdown
from bench.network_calls import SUBMIT_MINIMUM, WEBHOOK_MINIMUM, NetworkCallsResult
from bench.package_size import LAYER_TARGET_BYTES, PackageSizes
from bench.submit_batch import SubmitBatchResult
from bench.template_info import HANDLERS
from bench.video_copy import CopySample, VideoCopyResult, format_size
from local.template import REPO_ROOT

COLD_START_TARGET = 1.3
MEMORY_TARGET_MIB = 64.0
FLAT_TOLERANCE_MIB = 16.0  # "flat": the largest size grows at most two 8 MiB parts more
THROUGHPUT_TARGET = 0.8
BATCH_TARGET = 2.0

# Every row the table has, in order, by the group that measures it (the test checks each is
# printed).
COLD_FIGURES = (
    *(f"cold start: {short}" for short in HANDLERS),
    "webhook imports fal_client",
    "Powertools Tracer cost",
    "cold start: submit with nothing deferred",
)
NETWORK_FIGURES = ("network calls: submit", "network calls: webhook")
COPY_FIGURES = ("copy peak RSS growth", "copy RSS flat across sizes", "copy throughput")
BATCH_FIGURES = ("submit batch of 10 vs 1", "submit batch of 10 vs 1, no added latency")
SIZE_FIGURES = ("package size: layer", *(f"package size: {short}" for short in HANDLERS))
COST_FIGURES = ("AWS cost per video",)
FIGURES = (
    *COLD_FIGURES,
    *NETWORK_FIGURES,
    *COPY_FIGURES,
    *BATCH_FIGURES,
    *SIZE_FIGURES,
    *COST_FIGURES,
)
MET, NOT_MET, INFO, SKIPPED, ERROR = "met", "NOT MET", "info", "skipped", "ERROR"


@dataclass
class Row:
    figure: str
    measured: str
    baseline: str
    ratio: str
    target: str
    status: str
    note: str = ""


@dataclass
class RunConfig:
    quick: bool
    cold_repeats: int
    network_jobs: int
    batch_repeats: int
    copy_sizes: list[int]
    copy_repeats: int
    throughput_size: int
    throughput_repeats: int
    build_dir: Path
    command: str


@dataclass
class Results:
    config: RunConfig
    cold_start: ColdStartResult | None = None
    network: NetworkCallsResult | None = None
    batch: SubmitBatchResult | None = None
    batch_local: SubmitBatchResult | None = None  # without the modeled network latency
    copy: VideoCopyResult | None = None
    sizes: PackageSizes | None = None
    cost: CostBreakdown | None = None
    errors: dict[str, str] = field(default_factory=dict)  # group -> why it was not measured
    started: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    seconds: float = 0.0
    load: dict[str, float] = field(default_factory=dict)  # 1-min load average as each began
    busy: dict[str, float] = field(default_factory=dict)  # machine CPU busy share during each
    code: str = ""  # the commit measured


def verdict(ok: bool) -> str:
    return MET if ok else NOT_MET


def _missing(figures: tuple[str, ...], group: str, results: Results) -> list[Row]:
    why = results.errors.get(group, "not run (--only)")
    status = ERROR if group in results.errors else SKIPPED
    return [Row(name, "-", "-", "-", "-", status, why.splitlines()[0][:200]) for name in figures]


def _cold_rows(results: Results) -> list[Row]:
    cold = results.cold_start
    if cold is None:
        return _missing(COLD_FIGURES, "cold", results)
    base = cold.variants["baseline"].median_ms
    rows = []
    for short in HANDLERS:
        ratio = cold.ratio(short)
        rows.append(
            Row(
                f"cold start: {short}",
                f"{cold.variants[short].median_ms:.0f} ms",
                f"{base:.0f} ms (boto3 + Logger handler)",
                f"{ratio:.2f}x",
                f"<= {COLD_START_TARGET}x",
                verdict(ratio <= COLD_START_TARGET),
                "import + settings parse, median of fresh processes",
            )
        )
    fal = cold.variants["webhook"].loaded.get("fal_client", True)
    rows.append(
        Row(
            "webhook imports fal_client",
            "yes" if fal else "no",
            "-",
            "-",
            "no",
            verdict(not fal),
            "checked in sys.modules after import + init",
        )
    )
    tracer = cold.variants["tracer"].median_ms
    rows.append(
        Row(
            "Powertools Tracer cost",
            f"{tracer:.0f} ms ({tracer - base:+.0f} ms)",
            f"{base:.0f} ms (same handler without Tracer)",
            f"{tracer / base:.2f}x",
            "measured, decided",
            INFO,
            _tracer_decision(cold, tracer - base),
        )
    )
    eager = cold.variants["submit_eager"].median_ms
    submit = cold.variants["submit"].median_ms
    rows.append(
        Row(
            "cold start: submit with nothing deferred",
            f"{eager:.0f} ms ({eager - submit:+.0f} ms)",
            f"{base:.0f} ms (boto3 + Logger handler)",
            f"{eager / base:.2f}x",
            "-",
            INFO,
            "the submit handler with pydantic's metadata model and fal_client imported at init: "
            "deferred instead, they cost the first upload a cold container reads (and the first "
            "job it sends to fal) about the difference; duplicates, ignored keys, malformed "
            "messages and idle reconciler runs never load them",
        )
    )
    return rows


def _tracer_decision(cold: ColdStartResult, extra_ms: float) -> str:
    """The choice the Tracer row measures (made in pika_pipeline/observability.py), with the
    figure behind it from this run, so a run that no longer supports it says so."""
    if not cold.variants["tracer"].loaded.get("aws_xray_sdk"):
        return (
            "aws_xray_sdk was not imported with tracing disabled: the reason for leaving Tracer "
            "out (layers/shared/pika_pipeline/observability.py) no longer holds, revisit it"
        )
    return (
        "decision: no function uses Powertools Tracer (layers/shared/pika_pipeline/"
        "observability.py). Tracer() with POWERTOOLS_TRACE_DISABLED=true still imports "
        f"aws_xray_sdk: {extra_ms:+.0f} ms on every cold start for no traces, and "
        f"{cold.tracer_install_bytes / MIB:.1f} MiB more in the layer (aws-xray-sdk, wrapt)"
    )


def _network_rows(results: Results) -> list[Row]:
    network = results.network
    if network is None:
        return _missing(NETWORK_FIGURES, "network", results)
    rows = []
    for name, hooked, wire, minimum in (
        ("submit", network.submit, network.wire_submit, len(SUBMIT_MINIMUM)),
        ("webhook", network.webhook, network.wire_webhook, len(WEBHOOK_MINIMUM)),
    ):
        value = sum(hooked.values()) / network.jobs
        check = (
            "the wire (fault proxy, fal emulator) saw the same calls"
            if hooked == wire
            else f"the wire (fault proxy, fal emulator) saw {sum(wire.values()) / network.jobs:g}"
            " per job: see the details"
        )
        rows.append(
            Row(
                f"network calls: {name}",
                f"{value:g} per job",
                f"{minimum} (design minimum)",
                f"{value / minimum:.2f}x",
                f"<= {minimum}",
                verdict(value <= minimum),
                f"AWS + fal, mean over {network.jobs} jobs, counted in the function by "
                f"botocore/httpx/urllib3 hooks; SQS, secrets, JWKS excluded; {check}",
            )
        )
    return rows


def _copy_rows(results: Results) -> list[Row]:
    copy = results.copy
    if copy is None:
        return _missing(COPY_FIGURES, "copy", results)
    rows = []
    growths = {size: copy.growth_mib(size) for size in copy.sizes}
    for size, growth in growths.items():
        before = sorted(s.raw["rss_before_kib"] for s in copy.memory[size])[0] / 1024
        rows.append(
            Row(
                f"copy peak RSS growth {format_size(size)}",
                f"+{growth:.1f} MiB",
                f"{before:.0f} MiB RSS before the copy",
                f"{(before + growth) / before:.2f}x",
                f"<= {MEMORY_TARGET_MIB:.0f} MiB growth",
                verdict(growth <= MEMORY_TARGET_MIB),
                f"VideoStore.copy, median of {len(copy.memory[size])} fresh process(es)",
            )
        )
    rows.append(_flat_row(copy, growths))
    ratio = copy.throughput_ratio
    rows.append(
        Row(
            "copy throughput",
            f"{copy.throughput_mb_s('videostore'):.0f} MB/s",
            f"{copy.throughput_mb_s('upload_fileobj'):.0f} MB/s (boto3 upload_fileobj)",
            f"{ratio:.2f}x",
            f">= {THROUGHPUT_TARGET}x",
            verdict(ratio >= THROUGHPUT_TARGET),
            f"{format_size(copy.throughput_size)} from local HTTPS into moto, median of "
            f"{len(copy.throughput['videostore'])}",
        )
    )
    return rows


def _flat_row(copy: VideoCopyResult, growths: dict[int, float]) -> Row:
    """Flat: the largest video needs no more memory than the next size down (give or take two
    parts). The smallest sizes may need less, being too few parts to fill the pipeline."""
    if len(copy.sizes) < 2:
        return Row(COPY_FIGURES[1], "-", "-", "-", "-", SKIPPED, "needs two sizes or more")
    middle, largest = copy.sizes[-2], copy.sizes[-1]
    step = growths[largest] - growths[middle]
    return Row(
        COPY_FIGURES[1],
        f"{step:+.1f} MiB from {format_size(middle)} to {format_size(largest)}",
        f"+{growths[middle]:.1f} MiB growth at {format_size(middle)}",
        f"{growths[largest] / growths[middle]:.2f}x" if growths[middle] > 0 else "-",
        f"<= +{FLAT_TOLERANCE_MIB:.0f} MiB (two parts)",
        verdict(step <= FLAT_TOLERANCE_MIB),
        f"{largest / middle:.0f}x the bytes; all sizes: "
        + ", ".join(f"{format_size(size)} +{growth:.0f}" for size, growth in growths.items()),
    )


def _latency(batch: SubmitBatchResult) -> str:
    return ", ".join(f"{k} +{v * 1000:.0f} ms" for k, v in batch.network_latency.items())


def _batch_rows(results: Results) -> list[Row]:
    judged, local = results.batch, results.batch_local
    return [
        _batch_row(
            BATCH_FIGURES[0],
            judged,
            results,
            judged=True,
            note="real handler against the local stack, each call delayed by a production "
            f"round trip ({_latency(judged) if judged else '-'})",
        ),
        _batch_row(
            BATCH_FIGURES[1],
            local,
            results,
            judged=False,
            note="the same with local services as fast as they go: they share this machine's "
            "cores with the handler, so this measures CPU contention",
        ),
    ]


def _batch_row(
    figure: str, batch: SubmitBatchResult | None, results: Results, *, judged: bool, note: str
) -> Row:
    if batch is None:
        (row,) = _missing((figure,), "batch", results)
        return row
    return Row(
        figure,
        f"{median(batch.batch_s) * 1000:.0f} ms",
        f"{median(batch.single_s) * 1000:.0f} ms (one record)",
        f"{batch.ratio:.2f}x",
        f"<= {BATCH_TARGET}x" if judged else "-",
        verdict(batch.ratio <= BATCH_TARGET) if judged else INFO,
        f"{note}; median of {len(batch.batch_s)}",
    )


def _size_rows(results: Results) -> list[Row]:
    sizes = results.sizes
    if sizes is None:
        return _missing(SIZE_FIGURES, "size", results)
    if sizes.missing:
        return [Row(name, "-", "-", "-", "-", SKIPPED, sizes.missing) for name in SIZE_FIGURES]
    stale = f"; build differs from {len(sizes.stale_sources)} source file(s)" * bool(
        sizes.stale_sources
    )
    rows = []
    layer = sum(sizes.layers.values())
    rows.append(
        Row(
            "package size: layer",
            _mib(layer),
            f"{_mib(sizes.limit)} (Lambda limit)",
            f"{layer / sizes.limit:.3f}x",
            f"< {_mib(LAYER_TARGET_BYTES)}",
            verdict(layer < LAYER_TARGET_BYTES),
            f"{layer / 1e6:.1f} MB decimal; unzipped{stale}",
        )
    )
    for short, logical in HANDLERS.items():
        total = sizes.functions.get(logical)
        if total is None:
            rows.append(Row(f"package size: {short}", "-", "-", "-", "-", SKIPPED, "not built"))
            continue
        rows.append(
            Row(
                f"package size: {short}",
                _mib(total),
                f"{_mib(sizes.limit)} (Lambda limit)",
                f"{total / sizes.limit:.3f}x",
                f"< {_mib(sizes.limit)}",
                verdict(total < sizes.limit),
                f"function {_mib(sizes.artifacts[logical])} + its layers{stale}",
            )
        )
    return rows


def _cost_rows(results: Results) -> list[Row]:
    cost = results.cost
    if cost is None:
        return _missing(COST_FIGURES, "cost", results)
    return [
        Row(
            "AWS cost per video",
            f"${cost.worst_usd:.6f}",
            f"${FAL_PRICE_PER_VIDEO:.2f} (fal, per video)",
            f"{cost.share * 100:.4f}%",
            f"< {TARGET_SHARE * 100:.2f}%",
            verdict(cost.share < TARGET_SHARE),
            f"worst case (every invocation cold); warm ${cost.warm_usd:.6f}; for the sample "
            f"image: images from {cost.image_bytes_at_target() / 1e6:.1f} MB reach the target "
            "(S3 transfer out to fal)",
        )
    ]


def rows(results: Results) -> list[Row]:
    builders: list[Callable[[Results], list[Row]]] = [
        _cold_rows,
        _network_rows,
        _copy_rows,
        _batch_rows,
        _size_rows,
        _cost_rows,
    ]
    return [row for build in builders for row in build(results)]


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _mib(size: float) -> str:
    return f"{size / MIB:.1f} MiB"


COLUMNS = ("figure", "measured", "baseline (same run)", "ratio", "target", "result")


def _cells(row: Row) -> tuple[str, ...]:
    return (row.figure, row.measured, row.baseline, row.ratio, row.target, row.status)


def text_table(table: list[Row]) -> str:
    widths = [
        max(len(COLUMNS[i]), *(len(_cells(row)[i]) for row in table)) for i in range(len(COLUMNS))
    ]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(_cells(r), widths, strict=True)) for r in table]
    return "\n".join(out)


def markdown_table(table: list[Row]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " | notes |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row in table:
        status = f"**{row.status}**" if row.status in (NOT_MET, ERROR) else row.status
        cells = (*_cells(row)[:-1], status, row.note)
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def code_version() -> str:
    """The commit measured, and whether the work tree differed from it (outside the benchmark's
    own files)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git work tree)"
    own = ("bench/", "docs/", "tests/bench/")
    changed = [line[3:] for line in status if not line[3:].startswith(own)]
    return f"commit {commit}" + (
        f" plus uncommitted changes to {len(changed)} file(s)" if changed else ""
    )


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "python": sys.version.split()[0] + f" ({platform.python_implementation()})",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def _counter_table(columns: dict[str, Counter[str]], jobs: int) -> list[str]:
    operations = sorted({op for counter in columns.values() for op in counter})
    out = ["| operation | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for op in operations:
        cells = [f"{columns[name][op] / jobs:g}" if columns[name][op] else "" for name in columns]
        out.append(f"| `{op}` | " + " | ".join(cells) + " |")
    return out


def _tracer_details(cold: ColdStartResult, sizes: PackageSizes | None) -> list[str]:
    """Why no function uses Powertools Tracer, in this run's figures."""
    tracer, base = cold.variants["tracer"], cold.variants["baseline"]
    extra_ms = tracer.median_ms - base.median_ms
    xray_ms = tracer.by_package_ms.get("aws_xray_sdk", 0.0)
    text = (
        "Powertools Tracer, decided: not used by any function "
        "(layers/shared/pika_pipeline/observability.py keeps only Logger and Metrics). "
    )
    if not tracer.loaded.get("aws_xray_sdk"):
        return [
            text + "Measured here: `Tracer()` with tracing disabled did not import "
            "aws_xray_sdk, so the reason for that choice no longer holds; revisit it."
        ]
    text += (
        "`Tracer()` imports aws_xray_sdk even with POWERTOOLS_TRACE_DISABLED=true: "
        f"{extra_ms:+.0f} ms median over the same handler without it "
        f"({extra_ms / base.median_ms * 100:+.0f}%; aws_xray_sdk's own import {xray_ms:.0f} ms "
        "in the `-X importtime` run), paid on every cold start for traces that are not sent, "
        "and the webhook's cold start races fal's 15 s delivery timeout. It would also add "
        f"aws-xray-sdk and wrapt to the layer: {cold.tracer_install_bytes / MIB:.1f} MiB as "
        "installed in .venv"
    )
    if sizes is not None and sizes.layers:
        layer = sum(sizes.layers.values())
        text += (
            f", taking the layer from {_mib(layer)} to "
            f"{_mib(layer + cold.tracer_install_bytes)} of its {_mib(LAYER_TARGET_BYTES)} budget"
        )
    return [text + "."]


def _details(results: Results) -> list[str]:
    out: list[str] = []
    cold = results.cold_start
    if cold is not None:
        out += [
            "### Cold start",
            "",
            "Import + init in a fresh process, with the environment template.yaml gives the "
            "function (parameters at their defaults) and only deployable packages importable. "
            "Samples in ms, in the order taken.",
            "",
            "| variant | median | samples | modules | heaviest packages (self import time, one "
            "`-X importtime` run) |",
            "|---|---|---|---|---|",
        ]
        for name, variant in cold.variants.items():
            heavy = ", ".join(
                f"{pkg} {ms:.0f}" for pkg, ms in list(variant.by_package_ms.items())[:7]
            )
            taken = ", ".join(f"{v:.0f}" for v in variant.init_ms)
            out.append(
                f"| {name} | {variant.median_ms:.0f} ms | {taken} | {variant.modules} | {heavy} |"
            )
        loaded = {
            name: ", ".join(pkg for pkg, on in variant.loaded.items() if on)
            for name, variant in cold.variants.items()
        }
        out += ["", "Heavy packages loaded at init:", ""]
        out += [f"- {name}: {packages}" for name, packages in loaded.items()]
        base = cold.variants["baseline"].by_package_ms
        out += [
            "",
            "Where each handler's extra time over the baseline goes (self import ms by package, "
            "handler minus baseline, from the `-X importtime` runs; pydantic and fal_client ship "
            "with the submit and reconciler functions, not in the layer, and load when a job first "
            "needs them, so only submit_eager shows them here):",
            "",
        ]
        for name in (*HANDLERS, "submit_eager", "tracer"):
            extra = {
                pkg: ms - base.get(pkg, 0.0)
                for pkg, ms in cold.variants[name].by_package_ms.items()
            }
            top = sorted(extra.items(), key=lambda item: -item[1])[:8]
            out.append(f"- {name}: " + ", ".join(f"{pkg} +{ms:.0f}" for pkg, ms in top if ms >= 1))
        out += ["", *_tracer_details(cold, results.sizes)]
        out.append("")
    network = results.network
    if network is not None:
        out += [
            "### Network calls per job",
            "",
            f"{network.jobs} uploads through the whole local pipeline after one warm-up job; "
            "counts are per job. The design's minimum is "
            f"{len(SUBMIT_MINIMUM)} for submit ({'; '.join(SUBMIT_MINIMUM)}) and "
            f"{len(WEBHOOK_MINIMUM)} for the webhook ({'; '.join(WEBHOOK_MINIMUM)}).",
            "",
        ]
        out += [
            "Counted in each function's process by its clients' hooks, and again at the wire "
            "(fault proxy and fal emulator) as a cross-check"
            + (
                ": the two agree."
                if network.wire_agrees
                else ": **the two disagree**, so a call escaped one of the counts."
            ),
            "",
        ]
        out += _counter_table(
            {
                "submit": network.submit,
                "webhook": network.webhook,
                "excluded": network.excluded,
                "submit (wire)": network.wire_submit,
                "webhook (wire)": network.wire_webhook,
                "excluded (wire)": network.wire_excluded,
            },
            network.jobs,
        )
        out += [
            "",
            "The warm-up (first, cold) job made these calls, counted in the functions, nothing "
            "excluded (the SQS calls are the local runtime's poller, in the submit function's "
            "process):",
            "",
        ]
        out += _counter_table({"warm-up job": network.warmup}, 1)
        for name, calls in network.scheduled_calls.items():
            out += [
                "",
                f"{name}, one idle run (invoked {len(network.scheduled_ms[name])} times after a "
                f"warm-up, median {median(network.scheduled_ms[name]):.0f} ms):",
                "",
                *_counter_table({"per run": calls}, 1),
            ]
        out += [
            "",
            f"Warm webhook invocation (signed delivery replayed, job reopened): median "
            f"{network.webhook_median_ms:.0f} ms over {len(network.webhook_ms)}. Function log "
            "bytes per job: "
            + ", ".join(f"{k} {v:.0f} B" for k, v in network.log_bytes_per_job.items())
            + ".",
            "",
        ]
    copy = results.copy
    if copy is not None:
        out += [
            "### Webhook copy",
            "",
            "| size | mode | runs | RSS before | peak growth (median) | ru_maxrss growth | "
            "MB/s (median) |",
            "|---|---|---|---|---|---|---|",
        ]
        groups: list[tuple[int, str, list[CopySample]]] = [
            (size, "videostore", samples) for size, samples in copy.memory.items()
        ]
        for name, runs in copy.throughput.items():
            groups.append((copy.throughput_size, f"throughput: {name}", runs))
        for size, mode, samples in groups:
            if not samples:
                continue
            before = median([s.raw["rss_before_kib"] / 1024 for s in samples])
            out.append(
                f"| {format_size(size)} | {mode} | {len(samples)} | {before:.0f} MiB | "
                f"+{median([s.growth_mib for s in samples]):.1f} MiB | "
                f"+{median([s.ru_maxrss_growth_mib for s in samples]):.1f} MiB | "
                f"{median([s.mb_per_s for s in samples]):.0f} |"
            )
        notes = [
            "ru_maxrss growth (after minus before, in the same child) is shown because it is the "
            "usual figure, but it under-reports and is often 0: a child's ru_maxrss starts at its "
            "import-time peak, or even at the benchmark process's own RSS (Linux carries the "
            "high-water mark of the parent's memory over the fork and exec), and the kernel "
            "updates it lazily; the peak growth column is the 1 ms VmRSS sampler's (or VmHWM's, "
            "when higher) peak minus VmRSS just before the copy",
        ]
        out += ["", *[f"- {note}" for note in notes], ""]
    batch_runs: list[tuple[str, SubmitBatchResult]] = []
    if results.batch is not None:
        batch_runs.append(
            (f"with production round trips ({_latency(results.batch)})", results.batch)
        )
    if results.batch_local is not None:
        batch_runs.append(("local services as fast as they go", results.batch_local))
    for title, batch in batch_runs:
        out += [
            f"### Submit batch, {title}",
            "",
            f"- one record: wall {', '.join(f'{s * 1000:.0f}' for s in batch.single_s)} ms; "
            f"handler CPU (all threads) median {median(batch.single_cpu_s) * 1000:.1f} ms",
            f"- {batch.batch_size} records: wall "
            f"{', '.join(f'{s * 1000:.0f}' for s in batch.batch_s)} ms; handler CPU median "
            f"{median(batch.batch_cpu_s) * 1000:.1f} ms "
            f"({median(batch.batch_cpu_s) / batch.batch_size * 1000:.1f} ms per record)",
            f"- {batch.jobs_submitted} jobs submitted, all SUBMITTED afterwards",
            "",
            "Each outside call the handler made, alone and inside a full batch (median ms; the "
            "local services are Python processes sharing this machine's cores, and the local "
            "DynamoDB serialises requests for the same item, as DynamoDB does; see "
            "local/moto_server.py):",
            "",
            f"| call | in a batch of 1 | in a batch of {batch.batch_size} | calls timed |",
            "|---|---|---|---|",
        ]
        for call, by_size in sorted(batch.latencies.items()):
            alone, full = by_size.get("1", []), by_size.get(str(batch.batch_size), [])
            if not alone or not full:
                continue
            out.append(
                f"| `{call}` | {median(alone) * 1000:.1f} | {median(full) * 1000:.1f} | "
                f"{len(alone) + len(full)} |"
            )
        out.append("")
    sizes = results.sizes
    if sizes is not None and not sizes.missing:
        out += [f"### Package sizes ({_relative(sizes.build_dir)})", ""]
        out += [
            f"- {name}: {size:,} bytes ({_mib(size)})" for name, size in sizes.artifacts.items()
        ]
        if sizes.stale_sources:
            out.append(
                "- the build is **stale**: these sources differ from their copy in the build "
                "(run `make build` to refresh): " + ", ".join(sizes.stale_sources)
            )
        if sizes.unbuilt:
            out.append("- in the template but not in the build: " + ", ".join(sizes.unbuilt))
        out.append("")
    cost = results.cost
    if cost is not None:
        out += [
            "### AWS cost per video",
            "",
            f"Prices: {PRICES_AS_OF}. Memory from template.yaml: "
            + ", ".join(f"{k} {v} MB" for k, v in cost.memory_mb.items())
            + ".",
            "",
            "| item | quantity | list price | USD |",
            "|---|---|---|---|",
        ]
        for line in cost.lines:
            label = line.item + (" *(worst case only)*" if line.cold_only else "")
            out.append(
                f"| {label} | {line.quantity:.6g} {line.unit} | {PRICES[line.price_key][1]} | "
                f"${line.usd:.8f} |"
            )
        out += [
            f"| **warm total** | | | **${cost.warm_usd:.6f}** |",
            f"| **worst-case total** | | | **${cost.worst_usd:.6f}** "
            f"({cost.share * 100:.4f}% of ${FAL_PRICE_PER_VIDEO:.2f}) |",
            "",
            f"Lambda durations here come from loopback runs; the worst case stays under the "
            f"target until they are {cost.duration_headroom():.0f}x longer. The one cost that "
            "grows with the upload is S3's transfer out when fal downloads the image: measured "
            f"with the sample image; the worst case reaches the target for images of "
            f"{cost.image_bytes_at_target() / 1e6:.1f} MB and more (at list price, before AWS's "
            "free 100 GB a month of transfer out).",
            "",
        ]
        if cost.fixed_monthly:
            out += [
                "Not per video: scheduled runs on an idle stack, per 30-day month (measured "
                "idle run; each run that finds due jobs costs more):",
                "",
                "| item | quantity | list price | USD per month |",
                "|---|---|---|---|",
            ]
            out += [
                f"| {line.item} | {line.quantity:.6g} {line.unit} | {PRICES[line.price_key][1]}"
                f" | ${line.usd:.6f} |"
                for line in cost.fixed_monthly
            ]
            total = sum(line.usd for line in cost.fixed_monthly)
            out += [f"| **total** | | | **${total:.4f}** |", ""]
    return out


METHOD = """\
## How each figure is measured

- **Cold start**: a fresh `python` per sample, PYTHONPATH=`functions/<name>:layers/shared`
  (Lambda's order), the environment template.yaml gives the function; the clock covers
  `import app` plus the settings model's `from_environment()`. Baseline: a handler importing
  only boto3 and a Powertools Logger. Every module loads from bytecode, as from the package
  `make build` ships (the measured code is compiled first). `submit_eager` is the submit
  handler with what it defers to its first job (pydantic's metadata model, fal_client)
  imported at init. Variants interleaved, one warm-up round discarded. Only
  what the deployed function has can be imported (its requirements and the layer's, with their
  dependencies, plus the Lambda runtime's boto3; bench/deployable.py): this machine's dev tools
  stay out, e.g. httpx would otherwise load click, rich and pygments for its command line.
- **Network calls**: images uploaded to the local stack's input bucket (S3 -> EventBridge ->
  SQS -> submit -> fal emulator -> webhook). Each function counts every HTTP request it sends
  from inside its process (local/lambda_runtime/call_meter.py): botocore's `before-send` event
  for AWS (each attempt), an httpx request hook for fal_client, urllib3's pool for the webhook's
  downloads. Cross-check at the wire: AWS calls from the fault proxy's per-operation counter,
  fal calls from the emulator's request log, split between the functions by reading the counter
  once every job is SUBMITTED while no render has started. SQS (the poller's), Secrets Manager
  and JWKS (cached) and the emulator's presigned image GET (fal's, not the functions') are
  excluded.
- **Copy memory**: `VideoStore.copy` from a local HTTPS server that generates the bytes into
  moto S3, one fresh process per run; growth = peak RSS (1 ms VmRSS sampler and VmHWM reset
  before the copy) minus VmRSS just before the copy. "Flat": the largest size grows at most two
  8 MiB parts more than the next size down (the smallest sizes are too few parts to fill the
  upload pipeline, so they may need less).
- **Copy throughput**: the same copy against `s3.upload_fileobj` of the same HTTPS response
  with boto3's default transfer settings, alternating.
- **Submit batch**: the real submit handler, called in a subprocess with the submit function's
  local-stack environment, on SQS events of 1 and 10 new uploads (alternating, after a warm-up);
  the fal emulator holds its renders so nothing else competes for the CPU. The judged run adds a
  production round trip to each call (`NETWORK_LATENCY` in bench/submit_batch.py: the fault
  proxy delays AWS calls, the emulator its submit answers), because locally the services answer
  at CPU speed on the handler's own cores, which measures contention rather than the overlap of
  waits a batch buys on AWS; the run without it is reported as information.
- **Package sizes**: `local.build_report.inspect` on the `sam build` output, function plus
  layers against Lambda's 250 MB (250 MiB) unzipped limit; the layer target uses the same MiB.
- **Cost**: see the cost table; the target is checked on the worst case.

The local stack runs every service as a Python process on this machine, so absolute times are
not Lambda's; ratios against a baseline taken in the same run are what the targets judge.
"""


def document(results: Results, table: list[Row]) -> str:
    config = results.config
    info = machine()
    sizes = ", ".join(format_size(s) for s in config.copy_sizes)
    lines = [
        "# Performance",
        "",
        "Generated by `python -m bench` (`make bench`); do not edit by hand, run it again. Each "
        "figure is shown next to its baseline measured in the same run on the same machine "
        "(medians of several runs).",
        "",
        f"- date: {results.started:%Y-%m-%d %H:%M} UTC ({results.seconds:.0f} s run)",
        f"- machine: nproc {info['nproc']}, {info['cpu']}, {info['memory']} RAM, {info['os']}",
        f"- python: {info['python']}",
        f"- code: {results.code}",
        "- load average (1 min) as each part began: "
        + ", ".join(f"{name} {value:.2f}" for name, value in results.load.items())
        + "; CPU busy during each part, as a share of all cores: "
        + ", ".join(f"{name} {value:.0%}" for name, value in results.busy.items())
        + f" (nproc {info['nproc']}; on an idle machine the benchmark's own processes account "
        "for about 50-75%, so much more means other work shared the machine)",
        f"- command: `{config.command}`"
        + (" (quick: tiny sizes, few repetitions)" if config.quick else ""),
        f"- repetitions: cold start {config.cold_repeats}, jobs {config.network_jobs}, "
        f"submit batches {config.batch_repeats}, copies {config.copy_repeats} per size "
        f"({sizes}), throughput {config.throughput_repeats} per mode at "
        f"{format_size(config.throughput_size)}",
        "",
        "## Results",
        "",
        markdown_table(table),
        "",
    ]
    if results.errors:
        lines += ["Not measured:", ""]
        lines += [f"- {group}: `{why.splitlines()[0]}`" for group, why in results.errors.items()]
        lines.append("")
    lines += ["## Details", "", *_details(results), METHOD]
    lines += [
        "## How to reproduce",
        "",
        "```sh",
        "make bench                      # make build, then .venv/bin/python -m bench",
        ".venv/bin/python -m bench --quick --output /tmp/PERFORMANCE.md   # smoke run, < 1 min",
        ".venv/bin/python -m bench --sizes 10MB,100MB --throughput-size 100MB",
        "```",
        "",
        "Run from the repository root on an otherwise idle machine; the local stack (moto, the "
        "fal emulator, the Lambda runtimes) is started and stopped by the benchmark itself.",
        "",
    ]
    return "\n".join(lines)


def write(path: Path, results: Results, table: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document(results, table), encoding="utf-8")
