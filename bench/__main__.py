"""``python -m bench [--quick] [--sizes 10MB,100MB,1GB] [--output docs/PERFORMANCE.md]``.

Runs every figure with its baseline in one run, prints the table and writes the document. Exits
0 when every figure was measured (whether or not its target is met: a benchmark reports), 1 when
one could not be measured (the table says which and why), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench import (
    call_meter,
    cold_start,
    cost,
    dispatch_drain,
    network_calls,
    package_size,
    report,
    submit_batch,
    video_copy,
)
from bench.common import cpu_times, median
from bench.report import Results, RunConfig
from local.stack import LocalStack
from local.template import REPO_ROOT

GROUPS = ("cold", "network", "batch", "drain", "copy", "size", "cost")
# These figures are not about fal's capacity: a gate wide enough never to hold their jobs (one
# submit batch run holds up to 88 renders), yet at most 100 slots with the two operator items read
# along (the pause switch and the budget), so the dispatcher reads them in one BatchGetItem page
# and makes the calls it makes on a deployed stack.
STACK_PARAMETERS = {"FalConcurrency": "97", "FalQueueHeadroom": "1"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repetitions")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "PERFORMANCE.md")
    parser.add_argument(
        "--sizes",
        help="video sizes for the copy memory figure (default 10MB,100MB,1GB; quick 1MB,4MB)",
    )
    parser.add_argument(
        "--throughput-size",
        help="largest size for the throughput comparison (default 100MB; quick 4MB)",
    )
    parser.add_argument("--repeats", type=int, help="override every repetition count")
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / ".aws-sam" / "build")
    parser.add_argument(
        "--only", help=f"comma-separated subset of {','.join(GROUPS)} (default: all)"
    )
    return parser


def _config(args: argparse.Namespace, argv: list[str]) -> RunConfig:
    quick = bool(args.quick)
    sizes = args.sizes or ("1MB,4MB" if quick else "10MB,100MB,1GB")
    throughput = args.throughput_size or ("4MB" if quick else "100MB")
    repeats = args.repeats
    return RunConfig(
        quick=quick,
        cold_repeats=repeats or (3 if quick else 25),
        network_jobs=repeats or (2 if quick else 5),
        batch_repeats=repeats or (2 if quick else 7),
        copy_sizes=sorted(video_copy.parse_size(s) for s in sizes.split(",") if s.strip()),
        copy_repeats=repeats or (1 if quick else 3),
        throughput_size=video_copy.parse_size(throughput),
        throughput_repeats=repeats or (1 if quick else 7),
        build_dir=args.build_dir,
        command=shlex.join(["python", "-m", "bench", *argv]),
    )


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _attempt[T](results: Results, group: str, measure: Callable[[], T]) -> T | None:
    started = time.monotonic()
    results.load[group] = os.getloadavg()[0]
    busy, total = cpu_times()
    _log(f"{group}: measuring")
    try:
        value = measure()
    except Exception as exc:
        results.errors[group] = f"{type(exc).__name__}: {exc}"
        _log(f"{group}: FAILED\n{traceback.format_exc()}")
        return None
    finally:
        busy_after, total_after = cpu_times()
        if total_after - total >= 100:  # at least ~1 s of samples
            results.busy[group] = (busy_after - busy) / (total_after - total)
    _log(f"{group}: done in {time.monotonic() - started:.0f} s")
    return value


def _stack_figures(results: Results, selected: set[str]) -> None:
    config = results.config
    if not selected & {"network", "batch"}:
        return
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as state:
        try:
            # Schedules off: the reconciler runs only when the benchmark invokes it. Each
            # function process counts its network calls (bench/call_meter.py).
            stack = LocalStack(
                Path(state),
                STACK_PARAMETERS,
                run_schedules=False,
                function_python_path=[call_meter.SITE_DIR],
                function_environment=call_meter.function_environment(Path(state)),
            )
            info = stack.start()
        except Exception as exc:
            why = f"the local stack did not start: {type(exc).__name__}: {exc}"
            _log(why)
            for group in selected & {"network", "batch"}:
                results.errors[group] = why
            return
        try:
            if "network" in selected:
                results.network = _attempt(
                    results,
                    "network",
                    lambda: network_calls.measure(info, jobs=config.network_jobs),
                )
            if "batch" in selected:
                results.batch = _attempt(
                    results,
                    "batch",
                    lambda: submit_batch.measure(info, repeats=config.batch_repeats),
                )
                results.batch_local = _attempt(
                    results,
                    "batch",
                    lambda: submit_batch.measure(
                        info, repeats=config.batch_repeats, network_latency=False
                    ),
                )
        finally:
            stack.stop()


def _cost(results: Results) -> cost.CostBreakdown:
    network, cold, batch = results.network, results.cold_start, results.batch
    if network is None or cold is None or batch is None:
        raise RuntimeError("needs the cold start, network calls and submit batch figures")
    secrets = sum(n for op, n in network.warmup.items() if op.startswith("secretsmanager."))
    jobs = network.jobs
    return cost.compute(
        cost.CostInputs(
            submit_calls_per_job=Counter({k: v / jobs for k, v in network.submit.items()}),
            webhook_calls_per_job=Counter({k: v / jobs for k, v in network.webhook.items()}),
            secrets_calls_cold=float(secrets),
            submit_seconds=median(batch.single_s),
            webhook_seconds=network.webhook_median_ms / 1000,
            # A cold submit container pays what it defers on its first job: count it as init.
            submit_init_seconds=cold.variants["submit_eager"].median_ms / 1000,
            webhook_init_seconds=cold.variants["webhook"].median_ms / 1000,
            log_bytes_per_job=sum(network.log_bytes_per_job.values()),
            job_item=network.job_item,
            image_bytes=network.image_bytes,
            scheduled={
                name: (calls, median(network.scheduled_ms[name]) / 1000)
                for name, calls in network.scheduled_calls.items()
            },
        )
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    selected = set(GROUPS) if not args.only else {g.strip() for g in args.only.split(",")}
    if unknown := selected - set(GROUPS):
        _parser().error(f"unknown --only group(s): {', '.join(sorted(unknown))}")
    if args.repeats is not None and args.repeats < 1:
        _parser().error("--repeats must be at least 1")
    config = _config(args, argv)
    results = Results(config=config, code=report.code_version())
    results.load["start"] = os.getloadavg()[0]
    if results.load["start"] > (os.cpu_count() or 1) / 2:
        _log(f"warning: load average {results.load['start']:.2f}; other work skews the timings")
    started = time.monotonic()
    if "cold" in selected:
        results.cold_start = _attempt(
            results, "cold", lambda: cold_start.measure(config.cold_repeats)
        )
    _stack_figures(results, selected)
    if "drain" in selected:  # its own stack, with a new fal account's concurrency
        # Quick: few enough for the smoke run, still more than three times what fal can hold.
        uploads = 10 if config.quick else 60
        results.drain = _attempt(results, "drain", lambda: dispatch_drain.measure(uploads=uploads))
    if "copy" in selected:
        results.copy = _attempt(
            results,
            "copy",
            lambda: video_copy.measure(
                config.copy_sizes,
                repeats=config.copy_repeats,
                throughput_size=config.throughput_size,
                throughput_repeats=config.throughput_repeats,
                progress=_log,
            ),
        )
    if "size" in selected:
        results.sizes = _attempt(results, "size", lambda: package_size.measure(config.build_dir))
    if "cost" in selected:
        results.cost = _attempt(results, "cost", lambda: _cost(results))
    results.seconds = time.monotonic() - started
    if (now := report.code_version()) != results.code:
        results.code += f" at the start, {now} at the end: the code changed during the run"
    table = report.rows(results)
    print(report.text_table(table))
    for row in table:
        if row.status in (report.NOT_MET, report.ERROR, report.SKIPPED) and row.note:
            print(f"  {row.figure}: {row.status}: {row.note}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.document(results, table), encoding="utf-8")
    print(f"\nwrote {args.output}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
