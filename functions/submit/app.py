"""Submit function: SQS batches of upload events -> one fal job per upload.

Failed records are reported as partial batch failures, so only they are retried.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

from pika_pipeline.aws_clients import jobs_table, s3_client
from pika_pipeline.config import SubmitSettings
from pika_pipeline.fal_gateway import FalGateway
from pika_pipeline.job_repository import JobRepository
from pika_pipeline.observability import logger, metrics
from pika_pipeline.secrets_store import read_fal_key, read_secret
from pika_pipeline.submit_service import SubmitService

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def service() -> SubmitService:
    settings = SubmitSettings.from_environment()
    return SubmitService(
        settings=settings,
        repository=JobRepository(jobs_table(settings.jobs_table)),
        s3=s3_client(),
        fal=functools.cache(
            lambda: FalGateway(
                key=read_fal_key(settings.fal_key_secret),
                endpoint=settings.fal_endpoint,
                timeout_seconds=settings.fal_timeout_seconds,
            )
        ),
        token_key=lambda: read_secret(settings.webhook_token_secret),
    )


def record_handler(record: SQSRecord) -> None:
    logger.remove_keys(["job_id", "object_key", "fal_request_id"])
    logger.append_keys(message_id=record.message_id)
    service().process_message(record.body)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
