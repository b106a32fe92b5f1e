"""Reconciler function (on a schedule): settles jobs whose webhook never came or whose submit
crashed, through the same code as the submit and webhook paths."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from pika_pipeline import wiring
from pika_pipeline.config.reconciler import ReconcilerSettings
from pika_pipeline.observability import flush_breakdowns, logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from pika_pipeline.reconcile.reconciler import Reconciler

# Stop picking up jobs with this much time left, so a run never dies half-way through a copy.
SAFETY_MARGIN_MS = 60_000


@functools.cache
def settings() -> ReconcilerSettings:
    return ReconcilerSettings.from_environment()


@functools.cache
def reconciler() -> Reconciler:
    return wiring.reconciler(settings())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@flush_breakdowns
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return reconciler().run(
        reconcile_batch_size=settings().reconcile_batch_size,
        out_of_time=lambda: context.get_remaining_time_in_millis() < SAFETY_MARGIN_MS,
    )
