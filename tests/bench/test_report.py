"""The report has one row per figure, judges each against its target and states why Powertools
Tracer is left out (no stack: the results are built by hand, close to docs/PERFORMANCE.md's)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.cold_start import ColdStartResult, VariantResult
from bench.common import MIB
from bench.cost import CostBreakdown, CostLine
from bench.dispatch_drain import DrainResult
from bench.network_calls import NetworkCallsResult
from bench.package_size import PackageSizes
from bench.report import (
    ERROR,
    FIGURES,
    INFO,
    MET,
    NOT_MET,
    SKIPPED,
    Results,
    Row,
    RunConfig,
    document,
    rows,
)
from bench.submit_batch import SubmitBatchResult
from bench.template_info import HANDLERS
from bench.video_copy import CopySample, VideoCopyResult

MB = 1000**2
SUBMIT = Counter({"s3.GetObject": 1, "dynamodb.UpdateItem": 2, "fal.POST submit": 1})
WEBHOOK = Counter(
    {"dynamodb.GetItem": 1, "dynamodb.UpdateItem": 1, "events.PutEvents": 1}
    | {"fal.GET video": 1, "s3.PutObject": 1}
)


def _copy(mode: str, size: int, growth_mib: float, mb_per_s: float = 100.0) -> CopySample:
    return CopySample(mode, size, size / mb_per_s / MB, growth_mib, 0.0, {"rss_before_kib": 51200})


def _batch(single_s: float, batch_s: float, latency: dict[str, float]) -> SubmitBatchResult:
    latencies = {"s3.GetObject": {"1": [0.03], "10": [0.04]}}
    return SubmitBatchResult([single_s], [batch_s], [0.008], [0.06], 10, latency, 11, latencies)


def full_results(**cold_ms: float) -> Results:
    """A full run's results, close to the figures in docs/PERFORMANCE.md."""
    sizes_mb = [10 * MB, 100 * MB, 1000 * MB]
    config = RunConfig(True, 1, 5, 1, sizes_mb, 1, 100 * MB, 1, Path("build"), "python -m bench")
    medians = {"submit": 149.0, "webhook": 152.0, "reconciler": 140.0, "baseline": 132.0}
    medians |= {"tracer": 139.0, "submit_eager": 246.0, **cold_ms}
    variants = {
        name: VariantResult(
            name, [ms], loaded={"aws_xray_sdk": name == "tracer", "fal_client": False}
        )
        for name, ms in medians.items()
    }
    cold = ColdStartResult(variants, 1, tracer_install_bytes=int(1.2 * MIB))
    jobs = 5
    submit = Counter({op: n * jobs for op, n in SUBMIT.items()})
    webhook = Counter({op: n * jobs for op, n in WEBHOOK.items()})
    network = NetworkCallsResult(jobs, submit, webhook, Counter(), SUBMIT + WEBHOOK)
    network.wire_submit, network.wire_webhook = submit.copy(), webhook.copy()
    network.webhook_ms = [32.0]
    network.scheduled_calls = {"ReconcilerFunction": Counter({"dynamodb.Query": 4})}
    network.scheduled_ms = {"ReconcilerFunction": [18.0]}
    growths = dict(zip(sizes_mb, (15.9, 46.2, 48.0), strict=True))
    copy = VideoCopyResult(sizes_mb, 100 * MB)
    copy.memory = {size: [_copy("videostore", size, g)] for size, g in growths.items()}
    copy.throughput = {
        "videostore": [_copy("videostore", 100 * MB, 46.3, 171.0)],
        "upload_fileobj": [_copy("upload_fileobj", 100 * MB, 49.6, 170.0)],
    }
    layer, function = 22_956_361, 17_310_222
    artifacts = {"SharedLayer": layer, "WebhookFunction": 6536}
    artifacts |= {"SubmitFunction": function, "ReconcilerFunction": function}
    functions = {logical: layer + artifacts[logical] for logical in HANDLERS.values()}
    sizes = PackageSizes(Path("build"), artifacts, functions, {"SharedLayer": layer})
    cost = CostBreakdown(
        lines=[
            CostLine("S3 PUTs", 2, "PUTs", "s3_put"),
            CostLine("S3 transfer out", 0.0001, "GB", "s3_transfer_out_gb"),
            CostLine("Lambda submit", 0.116, "GB-s", "lambda_gb_s_arm64"),
            CostLine("Secrets Manager reads", 3, "calls", "secrets_api_call", cold_only=True),
        ],
        fixed_monthly=[CostLine("ReconcilerFunction requests", 8640, "requests", "lambda_request")],
        memory_mb={"SubmitFunction": 512, "WebhookFunction": 512},
    )
    rtt = {"dynamodb": 0.010, "s3": 0.025, "fal": 0.150}
    drain = DrainResult(60, 2, 1.05, 33.4, 0.97, 29.0, 0.93, [120.0, 140.0, 900.0], 3, 3)
    return Results(
        config=config,
        cold_start=cold,
        network=network,
        batch=_batch(0.232, 0.355, rtt),
        batch_local=_batch(0.027, 0.202, {}),
        copy=copy,
        sizes=sizes,
        cost=cost,
        drain=drain,
        code="commit 515ba88",
    )


def _row(table: list[Row], figure: str) -> Row:
    return next(row for row in table if row.figure == figure)


def test_a_full_run_has_one_row_per_figure_and_each_is_judged() -> None:
    results = full_results()

    table = rows(results)

    sizes = ("10 MB", "100 MB", "1 GB")
    copies = {"copy peak RSS growth": [f"copy peak RSS growth {size}" for size in sizes]}
    assert [row.figure for row in table] == [f for g in FIGURES for f in copies.get(g, [g])]
    informative = {"Powertools Tracer cost", "cold start: submit with nothing deferred"}
    informative.add("submit batch of 10 vs 1, no added latency")
    assert {row.figure for row in table if row.status == INFO} == informative
    assert {row.status for row in table if row.figure not in informative} == {MET}
    text = document(results, table)
    assert all(f"| {row.figure} |" in text for row in table)
    for section in ("## Results", "## How each figure is measured", "## How to reproduce"):
        assert section in text
    assert "make bench" in text
    assert "the wire saw the same calls" in text


def test_the_reconciler_has_a_cold_start_and_a_package_size_row() -> None:
    results = full_results(baseline=100, reconciler=200)

    table = rows(results)

    reconciler = _row(table, "cold start: reconciler")
    assert (reconciler.ratio, reconciler.status) == ("2.00x", NOT_MET)
    assert _row(table, "package size: reconciler").measured == "38.4 MiB"


def test_the_tracer_row_states_the_decision_with_the_measured_cost() -> None:
    results = full_results(baseline=100, tracer=120)

    note = _row(rows(results), "Powertools Tracer cost").note

    assert "no function uses Powertools Tracer" in note
    assert "+20 ms" in note
    assert "21.9 MiB to 23.1 MiB" in note


def test_a_group_that_failed_or_was_not_selected_says_so_in_its_rows() -> None:
    results = full_results()
    results.network, results.errors["network"] = None, "StackError: moto did not start\ntrace"
    results.copy = None

    table = rows(results)

    failed = _row(table, "network calls: submit")
    assert (failed.status, failed.note) == (ERROR, "StackError: moto did not start")
    assert _row(table, "copy throughput").status == SKIPPED
    assert "- network: `StackError: moto did not start`" in document(results, table)


def test_a_slow_drain_idle_slots_and_a_late_dispatch_are_not_met() -> None:
    results = full_results()
    # 60 videos of 1 s on 2 slots take at least 30 s
    results.drain = DrainResult(60, 2, 1.0, 36.0, 0.90, 29.0, 0.85, [800.0, 1200.0, 1500.0], 3, 3)

    table = rows(results)

    drain = _row(table, "dispatch: drain a drop")
    assert (drain.measured, drain.baseline) == ("36.0 s", "30.0 s (60 x 1.00 s / 2)")
    assert (drain.ratio, drain.status) == ("1.20x", NOT_MET)
    busy = _row(table, "dispatch: fal slots busy while work waits")
    assert (busy.measured, busy.status) == ("90.0%", NOT_MET)
    latency = _row(table, "dispatch: median DispatchLatency")
    assert (latency.measured, latency.status) == ("1200 ms", NOT_MET)
    assert "| **NOT MET** |" in document(results, table)


def test_calls_over_the_design_minimum_say_where_they_went() -> None:
    results = full_results()
    assert results.network is not None
    extra = Counter({"dynamodb.Query": 8 * results.network.jobs})  # 4 + 8, over the minimum
    results.network.submit += extra
    results.network.wire_submit += extra

    row = _row(rows(results), "network calls: submit")

    assert row.status == NOT_MET
    assert "per job: dynamodb.Query 8, dynamodb.UpdateItem 2" in row.note
