"""Submit function: SQS batches of upload events -> one fal job per upload.

Records of a batch run concurrently; failed ones are reported as partial batch failures, so only
they are retried.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from pika_pipeline.aws_clients import events_client, jobs_table, s3_client, sqs_client
from pika_pipeline.config import SubmitSettings
from pika_pipeline.fal_on_demand import fal_gateway_on_demand
from pika_pipeline.job_events import JobEvents
from pika_pipeline.job_repository import JobRepository
from pika_pipeline.observability import flush_breakdowns, logger, metrics
from pika_pipeline.secrets_store import read_secret
from pika_pipeline.submit_batch import SubmitBatch
from pika_pipeline.submit_service import SubmitService

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@functools.cache
def batch() -> SubmitBatch:
    settings = SubmitSettings.from_environment()
    service = SubmitService(
        settings=settings,
        repository=JobRepository(
            lambda: jobs_table(settings.jobs_table), retention_days=settings.job_retention_days
        ),
        s3=s3_client(),
        fal=fal_gateway_on_demand(settings),
        token_key=lambda: read_secret(settings.webhook_token_secret),
        events=JobEvents(events_client(), settings.event_bus_name),
    )
    return SubmitBatch(
        service=service,
        sqs=sqs_client(),
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@flush_breakdowns
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return batch().handle(event)
