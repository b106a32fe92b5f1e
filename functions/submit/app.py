"""Submit function: SQS batches of upload events -> one fal job per upload.

Records of a batch run concurrently; failed ones are reported as partial batch failures, so only
they are retried.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from pika_pipeline import wiring
from pika_pipeline.config.submit import SubmitSettings
from pika_pipeline.observability import flush_breakdowns, logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from pika_pipeline.submit.batch import SubmitBatch


@functools.cache
def batch() -> SubmitBatch:
    return wiring.submit_batch(SubmitSettings.from_environment())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@flush_breakdowns
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return batch().handle(event)
