"""The benchmark's output: one row per figure (measured, baseline, ratio, target, verdict) built
from the results, printed as a table and filled into performance_template.md by str.format."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from bench.cold_start import ColdStartResult
from bench.common import MIB, median
from bench.cost import FAL_PRICE_PER_VIDEO, PRICES_AS_OF, TARGET_SHARE, CostBreakdown
from bench.dispatch_drain import DrainResult
from bench.network_calls import SUBMIT_MINIMUM, WEBHOOK_MINIMUM, NetworkCallsResult
from bench.package_size import LAYER_TARGET_BYTES, PackageSizes
from bench.submit_batch import SubmitBatchResult
from bench.template_info import HANDLERS
from bench.video_copy import VideoCopyResult, format_size
from local.template import REPO_ROOT

COLD_START_TARGET = 1.3
MEMORY_TARGET_MIB = 64.0
FLAT_TOLERANCE_MIB = 16.0  # "flat": the largest size grows at most two 8 MiB parts more
THROUGHPUT_TARGET = 0.8
BATCH_TARGET = 2.0
DRAIN_TARGET, UTILISATION_TARGET, LATENCY_TARGET_MS = 1.10, 0.95, 1000.0
DRAIN = ("dispatch: drain a drop", "dispatch: fal slots busy while work waits",
         "dispatch: median DispatchLatency")  # fmt: skip
MET, NOT_MET, INFO, SKIPPED, ERROR = "met", "NOT MET", "info", "skipped", "ERROR"
UNMEASURED = ("-", "-", "-", "-")  # measured, baseline, ratio, target
COLUMNS = ("figure", "measured", "baseline (same run)", "ratio", "target", "result")
TEMPLATE = (Path(__file__).parent / "performance_template.md").read_text(encoding="utf-8")


class Row(NamedTuple):
    """The table's cells (COLUMNS), then a note for the document."""

    figure: str
    measured: str
    baseline: str
    ratio: str
    target: str
    status: str
    note: str = ""


def _row(figure: str, measured: str, baseline: str, ratio: float | str, target: str,
         ok: bool | None, note: str) -> Row:  # fmt: skip
    """A figure's row; `ok` None: reported, not judged."""
    shown = ratio if isinstance(ratio, str) else f"{ratio:.2f}x"
    status = INFO if ok is None else MET if ok else NOT_MET
    return Row(figure, measured, baseline, shown, target, status, note)


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
    drain: DrainResult | None = None
    errors: dict[str, str] = field(default_factory=dict)  # group -> why it was not measured
    started: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    seconds: float = 0.0
    load: dict[str, float] = field(default_factory=dict)  # 1-min load average as each began
    busy: dict[str, float] = field(default_factory=dict)  # machine CPU busy share during each
    code: str = ""  # the commit measured


SIZED = ("layer", *HANDLERS)


def _mib(size: float) -> str:
    return f"{size / MIB:.1f} MiB"


def _cold(cold: ColdStartResult, sizes: PackageSizes | None) -> list[Row]:
    v, ms = cold.variants, {name: x.median_ms for name, x in cold.variants.items()}
    base, extra = f"{ms['baseline']:.0f} ms (boto3 + Logger handler)", ms["tracer"] - ms["baseline"]
    out = [
        _row(f"cold start: {short}", f"{ms[short]:.0f} ms", base, cold.ratio(short),
             f"<= {COLD_START_TARGET}x", cold.ratio(short) <= COLD_START_TARGET,
             "import + settings parse, median of fresh processes")
        for short in HANDLERS
    ]  # fmt: skip
    fal = v["webhook"].loaded.get("fal_client", True)
    out.append(_row("webhook imports fal_client", "yes" if fal else "no", "-", "-", "no",
                    not fal, "checked in sys.modules after import + init"))  # fmt: skip
    layer, more = sum(sizes.layers.values()) if sizes else 0, cold.tracer_install_bytes
    why = "decision: no function uses Powertools Tracer (pika_pipeline/observability.py): with "
    why += f"tracing disabled it still imports aws_xray_sdk, {extra:+.0f} ms per cold start"
    why += f", and takes the layer from {_mib(layer)} to {_mib(layer + more)}" * bool(layer)
    if not v["tracer"].loaded.get("aws_xray_sdk"):
        why = "Tracer() no longer imports aws_xray_sdk: revisit leaving it out (observability.py)"
    out.append(_row("Powertools Tracer cost", f"{ms['tracer']:.0f} ms ({extra:+.0f} ms)",
                    f"{ms['baseline']:.0f} ms (same handler without Tracer)",
                    cold.ratio("tracer"), "measured, decided", None, why))  # fmt: skip
    eager = ms["submit_eager"] - ms["submit"]
    out.append(_row("cold start: submit with nothing deferred",
                    f"{ms['submit_eager']:.0f} ms ({eager:+.0f} ms)", base,
                    cold.ratio("submit_eager"), "-", None, "pydantic and fal_client imported at "
                    "init; deferred, a container's first job pays the difference"))  # fmt: skip
    return out


def _network(n: NetworkCallsResult) -> list[Row]:
    out = []
    for name, hooked, wire, minimum in (
        ("submit", n.submit, n.wire_submit, len(SUBMIT_MINIMUM)),
        ("webhook", n.webhook, n.wire_webhook, len(WEBHOOK_MINIMUM)),
    ):
        value = sum(hooked.values()) / n.jobs
        saw = ", ".join(f"{op} {c / n.jobs:g}" for op, c in sorted(wire.items()))
        note = f"mean of {n.jobs} jobs; the wire saw " + (
            "the same calls" if hooked == wire else saw
        )
        if value > minimum:  # where the extra calls went, for whoever takes it on
            note += "; per job: " + ", ".join(
                f"{op} {c / n.jobs:g}" for op, c in sorted(hooked.items())
            )
        out.append(_row(f"network calls: {name}", f"{value:g} per job",
                        f"{minimum} (design minimum)", value / minimum, f"<= {minimum}",
                        value <= minimum, note))  # fmt: skip
    return out


def _copy(copy: VideoCopyResult) -> list[Row]:
    growths, out = {size: copy.growth_mib(size) for size in copy.sizes}, []
    for size, growth in growths.items():
        before = min(s.raw["rss_before_kib"] for s in copy.memory[size]) / 1024
        out.append(_row(f"copy peak RSS growth {format_size(size)}", f"+{growth:.1f} MiB",
                        f"{before:.0f} MiB RSS before the copy", (before + growth) / before,
                        f"<= {MEMORY_TARGET_MIB:.0f} MiB growth", growth <= MEMORY_TARGET_MIB,
                        f"median of {len(copy.memory[size])} fresh process(es)"))  # fmt: skip
    if len(copy.sizes) < 2:
        out.append(Row("copy RSS flat across sizes", *UNMEASURED, SKIPPED, "needs two sizes"))
    else:  # the largest size against the next one down: the smallest fill fewer parts
        (middle, m), (largest, g) = [(format_size(s), growths[s]) for s in copy.sizes[-2:]]
        every = ", ".join(f"{format_size(s)} +{x:.0f}" for s, x in growths.items())
        out.append(_row("copy RSS flat across sizes", f"{g - m:+.1f} MiB from {middle} to "
                        f"{largest}", f"+{m:.1f} MiB growth at {middle}", g / m if m > 0 else "-",
                        f"<= +{FLAT_TOLERANCE_MIB:.0f} MiB (two parts)",
                        g - m <= FLAT_TOLERANCE_MIB, f"all sizes: {every}"))  # fmt: skip
    ours, theirs = map(copy.throughput_mb_s, ("videostore", "upload_fileobj"))
    runs = f"{format_size(copy.throughput_size)}, median of {len(copy.throughput['videostore'])}"
    out.append(_row("copy throughput", f"{ours:.0f} MB/s", f"{theirs:.0f} MB/s (boto3 "
                    "upload_fileobj)", ours / theirs, f">= {THROUGHPUT_TARGET}x",
                    ours / theirs >= THROUGHPUT_TARGET, runs))  # fmt: skip
    return out


def _batch(b: SubmitBatchResult) -> list[Row]:
    """The judged run adds production round trips; the other one is information."""
    added = ", ".join(f"{k} +{s * 1000:.0f} ms" for k, s in b.network_latency.items())
    figure = "submit batch of 10 vs 1" + ("" if added else ", no added latency")
    note = f"calls delayed by a production round trip ({added})" if added else "CPU contention"
    return [_row(figure, f"{median(b.batch_s) * 1000:.0f} ms",
                 f"{median(b.single_s) * 1000:.0f} ms (one record)", b.ratio,
                 f"<= {BATCH_TARGET}x" if added else "-", (b.ratio <= BATCH_TARGET) if added
                 else None,
                 f"{note}; median of {len(b.batch_s)}")]  # fmt: skip


def _sizes(sizes: PackageSizes) -> list[Row]:
    if sizes.missing:
        return [Row(f"package size: {s}", *UNMEASURED, SKIPPED, sizes.missing) for s in SIZED]
    limit, out, stale = sizes.limit, [], len(sizes.stale_sources)
    sized: list[tuple[str, int | None, int, str]]
    sized = [("layer", sum(sizes.layers.values()), LAYER_TARGET_BYTES, "unzipped")]
    sized += [(short, sizes.functions.get(logical), limit,
               f"function {_mib(sizes.artifacts.get(logical, 0))} + its layers")
              for short, logical in HANDLERS.items()]  # fmt: skip
    for short, total, target, note in sized:
        if total is None:
            out.append(Row(f"package size: {short}", *UNMEASURED, SKIPPED, "not built"))
            continue
        note += f"; build stale: {stale} source(s) changed, run make build" * bool(stale)
        ok, ratio = total < target, f"{total / limit:.3f}x"
        out.append(_row(f"package size: {short}", _mib(total), f"{_mib(limit)} (Lambda limit)",
                        ratio, f"< {_mib(target)}", ok, note))  # fmt: skip
    return out


def _cost(cost: CostBreakdown) -> list[Row]:
    note = f"worst case (every invocation cold); warm ${cost.warm_usd:.6f}; the worst case "
    note += f"reaches the target with Lambda runs {cost.duration_headroom():.0f}x longer or images "
    note += f"of {cost.image_bytes_at_target() / 1e6:.1f} MB; idle scheduled runs "
    note += f"${sum(x.usd for x in cost.fixed_monthly):.4f} a month"
    return [_row("AWS cost per video", f"${cost.worst_usd:.6f}",
                 f"${FAL_PRICE_PER_VIDEO:.2f} (fal, per video)", f"{cost.share * 100:.4f}%",
                 f"< {TARGET_SHARE * 100:.2f}%", cost.share < TARGET_SHARE, note)]  # fmt: skip


def _drain(d: DrainResult) -> list[Row]:
    ratio, ms, n = d.drain_seconds / d.minimum_seconds, median(d.dispatch_latency_ms), d.uploads
    return [_row(DRAIN[0], f"{d.drain_seconds:.1f} s", f"{d.minimum_seconds:.1f} s ({n} x "
                 f"{d.video_seconds:.2f} s / {d.concurrency})", ratio, f"<= {DRAIN_TARGET:.2f}x",
                 ratio <= DRAIN_TARGET, "first upload stored to last job COMPLETED"),
            _row(DRAIN[1], f"{d.utilisation:.1%}", f"{d.waiting_seconds:.1f} s of waiting", "-",
                 f">= {UTILISATION_TARGET:.0%}", d.utilisation >= UTILISATION_TARGET,
                 f"{d.utilisation_from_upload:.1%} from the first upload; at fal at once: "
                 f"at most {d.peak_outstanding} (cap {d.cap})"),
            _row(DRAIN[2], f"{ms:.0f} ms", "-", "-", f"<= {LATENCY_TARGET_MS:.0f} ms", ms <=
                 LATENCY_TARGET_MS, f"{len(d.dispatch_latency_ms)} dispatches")]  # fmt: skip


# Each group (its --only name, several entries for some): the rows it adds, in order, and how.
GROUPS: tuple[tuple[str, tuple[str, ...], Callable[[Results], list[Row] | None]], ...] = (
    ("cold", (*(f"cold start: {short}" for short in HANDLERS), "webhook imports fal_client",
              "Powertools Tracer cost", "cold start: submit with nothing deferred"),
     lambda r: None if r.cold_start is None else _cold(r.cold_start, r.sizes)),
    ("network", ("network calls: submit", "network calls: webhook"),
     lambda r: None if r.network is None else _network(r.network)),
    ("copy", ("copy peak RSS growth", "copy RSS flat across sizes", "copy throughput"),
     lambda r: None if r.copy is None else _copy(r.copy)),
    ("batch", ("submit batch of 10 vs 1",), lambda r: None if r.batch is None else _batch(r.batch)),
    ("batch", ("submit batch of 10 vs 1, no added latency",),
     lambda r: None if r.batch_local is None else _batch(r.batch_local)),
    ("size", tuple(f"package size: {short}" for short in SIZED),
     lambda r: None if r.sizes is None else _sizes(r.sizes)),
    ("cost", ("AWS cost per video",), lambda r: None if r.cost is None else _cost(r.cost)),
    ("drain", DRAIN, lambda r: None if r.drain is None else _drain(r.drain)),
)  # fmt: skip
FIGURES = tuple(figure for _, figures, _ in GROUPS for figure in figures)


def rows(results: Results) -> list[Row]:
    """Every group's rows; a group not measured says why in each of its rows."""
    out = []
    for group, figures, build in GROUPS:
        status = ERROR if group in results.errors else SKIPPED
        why = results.errors.get(group, "not run (--only)").splitlines()[0][:200]
        out += build(results) or [Row(figure, *UNMEASURED, status, why) for figure in figures]
    return out


def text_table(table: list[Row]) -> str:
    lines = [COLUMNS, *(row[: len(COLUMNS)] for row in table)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join([out[0], "  ".join("-" * w for w in widths), *out[1:]])


def _git(*args: str) -> str:
    run = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return run.stdout


def code_version() -> str:
    """The commit measured, and whether the work tree differs (outside the benchmark's files)."""
    try:
        commit, status = _git("rev-parse", "--short", "HEAD"), _git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git work tree)"
    own = ("bench/", "docs/", "tests/bench/")
    changed = [line[3:] for line in status.splitlines() if not line[3:].startswith(own)]
    more = f" plus uncommitted changes to {len(changed)} file(s)" if changed else ""
    return f"commit {commit.strip()}{more}"


def _environment(results: Results) -> list[str]:
    c, memory = results.config, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    load = ", ".join(f"{name} {value:.2f}" for name, value in results.load.items())
    busy = ", ".join(f"{name} {value:.0%}" for name, value in results.busy.items())
    return [
        f"- date: {results.started:%Y-%m-%d %H:%M} UTC ({results.seconds:.0f} s run)",
        f"- machine: nproc {os.cpu_count()}, {memory:.1f} GiB RAM, {platform.platform()}",
        f"- python: {sys.version.split()[0]} ({platform.python_implementation()})",
        f"- code: {results.code}; prices: {PRICES_AS_OF}",
        f"- load average (1 min) as each part began: {load}; CPU busy, as a share of all cores, "
        f"during each part: {busy} (the benchmark alone: about 50-75%)",
        f"- command: `{c.command}`" + " (quick: tiny sizes, few repetitions)" * c.quick,
        f"- repetitions: cold start {c.cold_repeats}, jobs {c.network_jobs}, submit batches "
        f"{c.batch_repeats}, copies {c.copy_repeats} per size "
        f"({', '.join(map(format_size, c.copy_sizes))}), throughput {c.throughput_repeats} "
        f"per mode at {format_size(c.throughput_size)}",
    ]


def document(results: Results, table: list[Row]) -> str:
    bold = [row._replace(status=f"**{row.status}**") if row.status in (NOT_MET, ERROR) else row
            for row in table]  # fmt: skip
    lines = [(*COLUMNS, "notes"), ("---",) * (len(COLUMNS) + 1), *bold]
    out = ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines]
    out += ["", "Not measured:"] * bool(results.errors)
    out += [f"- {group}: `{why.splitlines()[0]}`" for group, why in results.errors.items()]
    return TEMPLATE.format(environment="\n".join(_environment(results)), results="\n".join(out))
