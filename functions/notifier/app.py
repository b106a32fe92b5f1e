"""Notifier function: completion events from NotifyQueue -> signed Standard Webhooks deliveries.

Failed deliveries are reported as partial batch failures, each back after its own delay.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from pika_pipeline import wiring
from pika_pipeline.config.notifier import NotifierSettings
from pika_pipeline.observability import flush_breakdowns, logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from pika_pipeline.notify.notifier import Notifier


@functools.cache
def notifier() -> Notifier:
    return wiring.notifier(NotifierSettings.from_environment())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@flush_breakdowns
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return notifier().handle(event)
