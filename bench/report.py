"""The benchmark's output: one row per figure (value, baseline, ratio, target, verdict), printed
as a table and written with the details, the machine and the method (performance_method.md)
into docs/PERFORMANCE.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.cold_start import ColdStartResult
from bench.common import MIB, median
from bench.cost import FAL_PRICE_PER_VIDEO, PRICES, PRICES_AS_OF, TARGET_SHARE, CostBreakdown
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
METHOD = (Path(__file__).parent / "performance_method.md").read_text(encoding="utf-8")

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
FIGURES = (*COLD_FIGURES, *NETWORK_FIGURES, *COPY_FIGURES, *BATCH_FIGURES)
FIGURES += (*SIZE_FIGURES, *COST_FIGURES)
MET, NOT_MET, INFO, SKIPPED, ERROR = "met", "NOT MET", "info", "skipped", "ERROR"
COLUMNS = ("figure", "measured", "baseline (same run)", "ratio", "target", "result")
BASE = "(boto3 + Logger handler)"
T = tomllib.loads((Path(__file__).parent / "report_text.toml").read_text(encoding="utf-8"))


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


def _mib(size: float) -> str:
    return f"{size / MIB:.1f} MiB"


def _ms(seconds: Iterable[float]) -> str:
    return ", ".join(f"{s * 1000:.0f}" for s in seconds)


def _skip(figures: Sequence[str], status: str, why: str) -> list[Row]:
    return [Row(name, "-", "-", "-", "-", status, why) for name in figures]


def _missing(figures: Sequence[str], group: str, results: Results) -> list[Row]:
    why = results.errors.get(group, "not run (--only)").splitlines()[0][:200]
    return _skip(figures, ERROR if group in results.errors else SKIPPED, why)


def _cold_rows(cold: ColdStartResult) -> list[Row]:
    v = {name: variant.median_ms for name, variant in cold.variants.items()}
    base, tracer, eager = v["baseline"], v["tracer"], v["submit_eager"]
    note, target = "import + settings parse, median of fresh processes", f"<= {COLD_START_TARGET}x"
    rows = []
    for short in HANDLERS:
        ratio = cold.ratio(short)
        ok = verdict(ratio <= COLD_START_TARGET)
        cells = (f"{v[short]:.0f} ms", f"{base:.0f} ms {BASE}", f"{ratio:.2f}x", target, ok, note)
        rows.append(Row(f"cold start: {short}", *cells))
    fal = cold.variants["webhook"].loaded.get("fal_client", True)
    checked = "checked in sys.modules after import + init"
    rows.append(
        Row(COLD_FIGURES[-3], "yes" if fal else "no", "-", "-", "no", verdict(not fal), checked)
    )
    mib = cold.tracer_install_bytes / MIB
    loaded = cold.variants["tracer"].loaded.get("aws_xray_sdk")
    decision = (
        T["tracer_note"].format(extra=tracer - base, mib=mib) if loaded else T["tracer_note_gone"]
    )
    measured, without = (
        f"{tracer:.0f} ms ({tracer - base:+.0f} ms)",
        f"{base:.0f} ms (same handler without Tracer)",
    )
    rows.append(
        Row(
            COLD_FIGURES[-2],
            measured,
            without,
            f"{tracer / base:.2f}x",
            "measured, decided",
            INFO,
            decision,
        )
    )
    measured = f"{eager:.0f} ms ({eager - v['submit']:+.0f} ms)"
    rows.append(
        Row(
            COLD_FIGURES[-1],
            measured,
            f"{base:.0f} ms {BASE}",
            f"{eager / base:.2f}x",
            "-",
            INFO,
            T["eager_note"],
        )
    )
    return rows


def _network_rows(network: NetworkCallsResult) -> list[Row]:
    rows = []
    for name, hooked, wire, minimum in (
        ("submit", network.submit, network.wire_submit, len(SUBMIT_MINIMUM)),
        ("webhook", network.webhook, network.wire_webhook, len(WEBHOOK_MINIMUM)),
    ):
        value, seen = sum(hooked.values()) / network.jobs, sum(wire.values()) / network.jobs
        saw = "the same calls" if hooked == wire else f"{seen:g} per job: see the details"
        check = f"the wire (fault proxy, fal emulator) saw {saw}"
        note = T["network_note"].format(jobs=network.jobs, check=check)
        cells = (f"{value:g} per job", f"{minimum} (design minimum)", f"{value / minimum:.2f}x")
        rows.append(
            Row(f"network calls: {name}", *cells, f"<= {minimum}", verdict(value <= minimum), note)
        )
    return rows


def _copy_rows(copy: VideoCopyResult) -> list[Row]:
    growths = {size: copy.growth_mib(size) for size in copy.sizes}
    rows = []
    for size, growth in growths.items():
        before = min(s.raw["rss_before_kib"] for s in copy.memory[size]) / 1024
        cells = (
            f"+{growth:.1f} MiB",
            f"{before:.0f} MiB RSS before the copy",
            f"{(before + growth) / before:.2f}x",
        )
        note = f"VideoStore.copy, median of {len(copy.memory[size])} fresh process(es)"
        ok = verdict(growth <= MEMORY_TARGET_MIB)
        rows.append(
            Row(
                f"copy peak RSS growth {format_size(size)}",
                *cells,
                f"<= {MEMORY_TARGET_MIB:.0f} MiB growth",
                ok,
                note,
            )
        )
    # Flat: the largest video needs no more memory than the next size down (give or take two
    # parts). The smallest sizes may need less, being too few parts to fill the pipeline.
    if len(copy.sizes) < 2:
        rows += _skip(COPY_FIGURES[1:2], SKIPPED, "needs two sizes or more")
    else:
        (middle, m), (largest, g) = [(s, growths[s]) for s in copy.sizes[-2:]]
        step = f"{g - m:+.1f} MiB from {format_size(middle)} to {format_size(largest)}"
        cells = (
            step,
            f"+{m:.1f} MiB growth at {format_size(middle)}",
            f"{g / m:.2f}x" if m > 0 else "-",
        )
        every = ", ".join(f"{format_size(s)} +{x:.0f}" for s, x in growths.items())
        note = f"{largest / middle:.0f}x the bytes; all sizes: {every}"
        ok = verdict(g - m <= FLAT_TOLERANCE_MIB)
        rows.append(
            Row(COPY_FIGURES[1], *cells, f"<= +{FLAT_TOLERANCE_MIB:.0f} MiB (two parts)", ok, note)
        )
    ratio = copy.throughput_ratio
    ours, theirs = copy.throughput_mb_s("videostore"), copy.throughput_mb_s("upload_fileobj")
    cells = (f"{ours:.0f} MB/s", f"{theirs:.0f} MB/s (boto3 upload_fileobj)", f"{ratio:.2f}x")
    runs = len(copy.throughput["videostore"])
    note = f"{format_size(copy.throughput_size)} from local HTTPS into moto, median of {runs}"
    rows.append(
        Row(
            "copy throughput",
            *cells,
            f">= {THROUGHPUT_TARGET}x",
            verdict(ratio >= THROUGHPUT_TARGET),
            note,
        )
    )
    return rows


def _latency(batch: SubmitBatchResult) -> str:
    return ", ".join(f"{k} +{v * 1000:.0f} ms" for k, v in batch.network_latency.items())


def _batch_rows(results: Results) -> list[Row]:
    judged, rows = results.batch, []
    judged_note = T["batch_note"].format(latency=_latency(judged) if judged else "-")
    for figure, batch, note in (
        (BATCH_FIGURES[0], judged, judged_note),
        (BATCH_FIGURES[1], results.batch_local, T["batch_local_note"]),
    ):
        if batch is None:
            rows += _missing((figure,), "batch", results)
            continue
        ms = (
            f"{median(batch.batch_s) * 1000:.0f} ms",
            f"{median(batch.single_s) * 1000:.0f} ms (one record)",
        )
        target = f"<= {BATCH_TARGET}x" if batch is judged else "-"
        ok = verdict(batch.ratio <= BATCH_TARGET) if batch is judged else INFO
        rows.append(
            Row(
                figure,
                *ms,
                f"{batch.ratio:.2f}x",
                target,
                ok,
                f"{note}; median of {len(batch.batch_s)}",
            )
        )
    return rows


def _size_rows(sizes: PackageSizes) -> list[Row]:
    if sizes.missing:
        return _skip(SIZE_FIGURES, SKIPPED, sizes.missing)
    stale = f"; build differs from {len(sizes.stale_sources)} source file(s)" * bool(
        sizes.stale_sources
    )
    limit, layer = sizes.limit, sum(sizes.layers.values())
    cells = (
        _mib(layer),
        f"{_mib(limit)} (Lambda limit)",
        f"{layer / limit:.3f}x",
        f"< {_mib(LAYER_TARGET_BYTES)}",
    )
    note = f"{layer / 1e6:.1f} MB decimal; unzipped{stale}"
    rows = [Row("package size: layer", *cells, verdict(layer < LAYER_TARGET_BYTES), note)]
    for short, logical in HANDLERS.items():
        total = sizes.functions.get(logical)
        if total is None:
            rows += _skip((f"package size: {short}",), SKIPPED, "not built")
            continue
        cells = (
            _mib(total),
            f"{_mib(limit)} (Lambda limit)",
            f"{total / limit:.3f}x",
            f"< {_mib(limit)}",
        )
        note = f"function {_mib(sizes.artifacts[logical])} + its layers{stale}"
        rows.append(Row(f"package size: {short}", *cells, verdict(total < limit), note))
    return rows


def _cost_rows(cost: CostBreakdown) -> list[Row]:
    note = T["cost_note"].format(warm=cost.warm_usd, at_target=cost.image_bytes_at_target() / 1e6)
    cells = (
        f"${cost.worst_usd:.6f}",
        f"${FAL_PRICE_PER_VIDEO:.2f} (fal, per video)",
        f"{cost.share * 100:.4f}%",
    )
    ok = verdict(cost.share < TARGET_SHARE)
    return [Row("AWS cost per video", *cells, f"< {TARGET_SHARE * 100:.2f}%", ok, note)]


def rows(results: Results) -> list[Row]:
    r = results
    out = _cold_rows(r.cold_start) if r.cold_start else _missing(COLD_FIGURES, "cold", r)
    out += _network_rows(r.network) if r.network else _missing(NETWORK_FIGURES, "network", r)
    out += _copy_rows(r.copy) if r.copy else _missing(COPY_FIGURES, "copy", r)
    out += _batch_rows(r)
    out += _size_rows(r.sizes) if r.sizes else _missing(SIZE_FIGURES, "size", r)
    return out + (_cost_rows(r.cost) if r.cost else _missing(COST_FIGURES, "cost", r))


def _cells(row: Row) -> tuple[str, ...]:
    return (row.figure, row.measured, row.baseline, row.ratio, row.target, row.status)


def text_table(table: list[Row]) -> str:
    lines = [COLUMNS, *map(_cells, table)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join([out[0], "  ".join("-" * w for w in widths), *out[1:]])


def _md(header: Sequence[str], body: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table: one header row, then one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(str, cells)) + " |" for cells in body]


def markdown_table(table: list[Row]) -> str:
    def cells(row: Row) -> list[str]:
        status = f"**{row.status}**" if row.status in (NOT_MET, ERROR) else row.status
        return [c.replace("|", "\\|") for c in (*_cells(row)[:-1], status, row.note)]

    return "\n".join(_md((*COLUMNS, "notes"), map(cells, table)))


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout


def code_version() -> str:
    """The commit measured, and whether the work tree differed from it (outside the benchmark's
    own files)."""
    try:
        commit, status = _git("rev-parse", "--short", "HEAD").strip(), _git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git work tree)"
    own = ("bench/", "docs/", "tests/bench/")
    changed = [line[3:] for line in status.splitlines() if not line[3:].startswith(own)]
    return f"commit {commit}" + (
        f" plus uncommitted changes to {len(changed)} file(s)" if changed else ""
    )


def _proc(path: str, prefix: str) -> str:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(prefix)), "")


def machine() -> dict[str, str]:
    memory = _proc("/proc/meminfo", "MemTotal:")
    return {
        "nproc": str(os.cpu_count()),
        "cpu": _proc("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "memory": f"{int(memory.split()[0]) / 1024**2:.1f} GiB" if memory else "",
        "python": sys.version.split()[0] + f" ({platform.python_implementation()})",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def _counters(columns: dict[str, Counter[str]], jobs: int) -> list[str]:
    ops = sorted({op for counter in columns.values() for op in counter})
    body = ([f"`{op}`", *(f"{c[op] / jobs:g}" if c[op] else "" for c in columns.values())]
            for op in ops)  # fmt: skip
    return _md(("operation", *columns), body)


def _cold_details(cold: ColdStartResult, sizes: PackageSizes | None) -> list[str]:
    v, base = cold.variants, cold.variants["baseline"]
    heaviest = "heaviest packages (self import time, one `-X importtime` run)"
    header = ("variant", "median", "samples", "modules", heaviest)
    body = (
        (n, f"{x.median_ms:.0f} ms", ", ".join(f"{ms:.0f}" for ms in x.init_ms), x.modules,
         ", ".join(f"{p} {ms:.0f}" for p, ms in list(x.by_package_ms.items())[:7]))
        for n, x in v.items()
    )  # fmt: skip
    out = ["### Cold start", "", T["cold_intro"], "", *_md(header, body), ""]
    out += ["Heavy packages loaded at init:", ""]
    out += [f"- {n}: " + ", ".join(p for p, on in x.loaded.items() if on) for n, x in v.items()]
    out += ["", T["cold_extra"], ""]
    for name in (*HANDLERS, "submit_eager", "tracer"):
        extra = {p: ms - base.by_package_ms.get(p, 0.0) for p, ms in v[name].by_package_ms.items()}
        top = sorted(extra.items(), key=lambda item: -item[1])[:8]
        out.append(f"- {name}: " + ", ".join(f"{p} +{ms:.0f}" for p, ms in top if ms >= 1))
    tracer, extra_ms = v["tracer"], v["tracer"].median_ms - base.median_ms
    if not tracer.loaded.get("aws_xray_sdk"):
        return [*out, "", T["tracer"] + T["tracer_gone"], ""]
    share, xray = extra_ms / base.median_ms * 100, tracer.by_package_ms.get("aws_xray_sdk", 0.0)
    mib = cold.tracer_install_bytes / MIB
    text = T["tracer"] + T["tracer_cost"].format(extra=extra_ms, share=share, xray=xray, mib=mib)
    if sizes is not None and sizes.layers:
        layer = sum(sizes.layers.values())
        after, budget = _mib(layer + cold.tracer_install_bytes), _mib(LAYER_TARGET_BYTES)
        text += T["tracer_layer"].format(before=_mib(layer), after=after, budget=budget)
    return [*out, "", text + ".", ""]


def _network_details(n: NetworkCallsResult) -> list[str]:
    intro = T["network_intro"].format(
        jobs=n.jobs, submit=len(SUBMIT_MINIMUM), submit_calls="; ".join(SUBMIT_MINIMUM),
        webhook=len(WEBHOOK_MINIMUM), webhook_calls="; ".join(WEBHOOK_MINIMUM),
    )  # fmt: skip
    check = T["network_check"] + (T["agree"] if n.wire_agrees else T["disagree"])
    out = ["### Network calls per job", "", intro, "", check, ""]
    columns = {"submit": n.submit, "webhook": n.webhook, "excluded": n.excluded}
    columns |= {"submit (wire)": n.wire_submit, "webhook (wire)": n.wire_webhook}
    out += _counters(columns | {"excluded (wire)": n.wire_excluded}, n.jobs)
    out += ["", T["warmup"], "", *_counters({"warm-up job": n.warmup}, 1)]
    for name, calls in n.scheduled_calls.items():
        taken = n.scheduled_ms[name]
        title = T["scheduled"].format(name=name, runs=len(taken), ms=median(taken))
        out += ["", title, "", *_counters({"per run": calls}, 1)]
    logs = ", ".join(f"{k} {v:.0f} B" for k, v in n.log_bytes_per_job.items())
    warm = T["webhook_warm"].format(ms=n.webhook_median_ms, runs=len(n.webhook_ms), logs=logs)
    return [*out, "", warm, ""]


def _copy_details(copy: VideoCopyResult) -> list[str]:
    groups = [(size, "videostore", samples) for size, samples in copy.memory.items()]
    groups += [(copy.throughput_size, f"throughput: {m}", s) for m, s in copy.throughput.items()]
    body = (
        (format_size(size), mode, len(s),
         f"{median([x.raw['rss_before_kib'] / 1024 for x in s]):.0f} MiB",
         f"+{median([x.growth_mib for x in s]):.1f} MiB",
         f"+{median([x.ru_maxrss_growth_mib for x in s]):.1f} MiB",
         f"{median([x.mb_per_s for x in s]):.0f}")
        for size, mode, s in groups
        if s
    )  # fmt: skip
    header: tuple[str, ...] = ("size", "mode", "runs", "RSS before", "peak growth (median)")
    header += ("ru_maxrss growth", "MB/s (median)")
    return ["### Webhook copy", "", *_md(header, body), "", T["ru_maxrss"], ""]


def _batch_details(title: str, b: SubmitBatchResult) -> list[str]:
    cpu, one_cpu = median(b.batch_cpu_s) * 1000, median(b.single_cpu_s) * 1000
    out = [f"### Submit batch, {title}", ""]
    out += [
        f"- one record: wall {_ms(b.single_s)} ms; handler CPU (all threads) median "
        f"{one_cpu:.1f} ms"
    ]
    out += [f"- {b.batch_size} records: wall {_ms(b.batch_s)} ms; handler CPU median {cpu:.1f} ms "
            f"({cpu / b.batch_size:.1f} ms per record)"]  # fmt: skip
    out += [
        f"- {b.jobs_submitted} jobs submitted, all SUBMITTED afterwards",
        "",
        T["batch_calls"],
        "",
    ]
    full = str(b.batch_size)
    timed = [(c, s.get("1", []), s.get(full, [])) for c, s in sorted(b.latencies.items())]
    header = ("call", "in a batch of 1", f"in a batch of {full}", "calls timed")
    body = ((f"`{c}`", f"{median(a) * 1000:.1f}", f"{median(f) * 1000:.1f}", len(a) + len(f))
            for c, a, f in timed if a and f)  # fmt: skip
    return [*out, *_md(header, body), ""]


def _size_details(sizes: PackageSizes) -> list[str]:
    try:
        where = str(sizes.build_dir.resolve().relative_to(REPO_ROOT))
    except ValueError:
        where = str(sizes.build_dir)
    out = [f"### Package sizes ({where})", ""]
    out += [f"- {name}: {size:,} bytes ({_mib(size)})" for name, size in sizes.artifacts.items()]
    if sizes.stale_sources:
        out.append(T["stale"] + ", ".join(sizes.stale_sources))
    if sizes.unbuilt:
        out.append("- in the template but not in the build: " + ", ".join(sizes.unbuilt))
    return [*out, ""]


def _cost_details(cost: CostBreakdown) -> list[str]:
    memory = ", ".join(f"{k} {v} MB" for k, v in cost.memory_mb.items())
    out = [
        "### AWS cost per video",
        "",
        T["cost_intro"].format(as_of=PRICES_AS_OF, memory=memory),
        "",
    ]
    worst = f"**${cost.worst_usd:.6f}** ({cost.share * 100:.4f}% of ${FAL_PRICE_PER_VIDEO:.2f})"
    body = [
        (line.item + (" *(worst case only)*" if line.cold_only else ""),
         f"{line.quantity:.6g} {line.unit}", PRICES[line.price_key][1], f"${line.usd:.8f}")
        for line in cost.lines
    ]  # fmt: skip
    body += [
        ("**warm total**", "", "", f"**${cost.warm_usd:.6f}**"),
        ("**worst-case total**", "", "", worst),
    ]
    after = T["cost_after"].format(
        headroom=cost.duration_headroom(), at_target=cost.image_bytes_at_target() / 1e6
    )
    out += [*_md(("item", "quantity", "list price", "USD"), body), "", after, ""]
    if cost.fixed_monthly:
        body = [
            (
                line.item,
                f"{line.quantity:.6g} {line.unit}",
                PRICES[line.price_key][1],
                f"${line.usd:.6f}",
            )
            for line in cost.fixed_monthly
        ]
        body.append(
            ("**total**", "", "", f"**${sum(line.usd for line in cost.fixed_monthly):.4f}**")
        )
        out += [
            T["cost_fixed"],
            "",
            *_md(("item", "quantity", "list price", "USD per month"), body),
            "",
        ]
    return out


def _details(r: Results) -> list[str]:
    out = _cold_details(r.cold_start, r.sizes) if r.cold_start else []
    out += _network_details(r.network) if r.network else []
    out += _copy_details(r.copy) if r.copy else []
    if r.batch:
        out += _batch_details(f"with production round trips ({_latency(r.batch)})", r.batch)
    if r.batch_local:
        out += _batch_details("local services as fast as they go", r.batch_local)
    out += _size_details(r.sizes) if r.sizes and not r.sizes.missing else []
    return out + (_cost_details(r.cost) if r.cost else [])


def document(results: Results, table: list[Row]) -> str:
    c, info = results.config, machine()
    load = ", ".join(f"{name} {value:.2f}" for name, value in results.load.items())
    busy = ", ".join(f"{name} {value:.0%}" for name, value in results.busy.items())
    lines = [
        "# Performance",
        "",
        "Generated by `python -m bench` (`make bench`); do not edit by hand, "
        "run it again. Each figure is shown next to its baseline measured in the same run on the "
        "same machine (medians of several runs).",
        "",
        f"- date: {results.started:%Y-%m-%d %H:%M} UTC ({results.seconds:.0f} s run)",
        f"- machine: nproc {info['nproc']}, {info['cpu']}, {info['memory']} RAM, {info['os']}",
        f"- python: {info['python']}",
        f"- code: {results.code}",
        f"- load average (1 min) as each part began: {load}; CPU busy during each part, as a share "
        f"of all cores: {busy} (nproc {info['nproc']}; on an idle machine the benchmark's own "
        "processes account for about 50-75%, so much more means other work shared the machine)",
        f"- command: `{c.command}`" + (" (quick: tiny sizes, few repetitions)" if c.quick else ""),
        f"- repetitions: cold start {c.cold_repeats}, jobs {c.network_jobs}, submit batches "
        f"{c.batch_repeats}, copies {c.copy_repeats} per size "
        f"({', '.join(format_size(s) for s in c.copy_sizes)}), throughput "
        f"{c.throughput_repeats} per mode at {format_size(c.throughput_size)}",
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
    return "\n".join([*lines, "## Details", "", *_details(results)]) + "\n" + METHOD


def write(path: Path, results: Results, table: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document(results, table), encoding="utf-8")
