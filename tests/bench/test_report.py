"""The report judges every function and states why Powertools Tracer is left out (no stack)."""

from __future__ import annotations

from pathlib import Path

from bench.cold_start import ColdStartResult, VariantResult
from bench.common import MIB
from bench.package_size import PackageSizes
from bench.report import NOT_MET, Results, Row, RunConfig, document, rows
from bench.template_info import HANDLERS


def _results(**medians_ms: float) -> Results:
    config = RunConfig(
        quick=True,
        cold_repeats=1,
        network_jobs=1,
        batch_repeats=1,
        copy_sizes=[],
        copy_repeats=1,
        throughput_size=1,
        throughput_repeats=1,
        build_dir=Path("build"),
        command="python -m bench",
    )
    variants = {
        name: VariantResult(name, init_ms=[ms], loaded={"aws_xray_sdk": name == "tracer"})
        for name, ms in medians_ms.items()
    }
    sizes = PackageSizes(
        build_dir=Path("build"),
        artifacts={"SharedLayer": 18 * MIB, **{logical: MIB for logical in HANDLERS.values()}},
        functions={logical: 19 * MIB for logical in HANDLERS.values()},
        layers={"SharedLayer": 18 * MIB},
    )
    cold = ColdStartResult(variants, repeats=1, tracer_install_bytes=MIB)
    return Results(config=config, cold_start=cold, sizes=sizes)


def _row(table: list[Row], figure: str) -> Row:
    return next(row for row in table if row.figure == figure)


def test_the_reconciler_has_a_cold_start_and_a_package_size_row() -> None:
    results = _results(
        baseline=100, tracer=120, submit_eager=150, submit=125, webhook=110, reconciler=200
    )

    table = rows(results)

    reconciler = _row(table, "cold start: reconciler")
    assert (reconciler.ratio, reconciler.status) == ("2.00x", NOT_MET)
    assert _row(table, "package size: reconciler").measured == "19.0 MiB"


def test_the_tracer_row_and_the_details_state_the_decision_with_the_measured_cost() -> None:
    results = _results(
        baseline=100, tracer=120, submit_eager=150, submit=125, webhook=110, reconciler=120
    )

    table = rows(results)

    note = _row(table, "Powertools Tracer cost").note
    assert "no function uses Powertools Tracer" in note
    assert "+20 ms" in note
    text = document(results, table)
    assert "Powertools Tracer, decided: not used" in text
    assert "from 18.0 MiB to 19.0 MiB" in text
