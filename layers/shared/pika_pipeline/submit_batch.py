"""One SQS batch of upload events: records run concurrently, fal outages back off through SQS."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pika_pipeline.errors import FalUnavailable, MalformedMessage
from pika_pipeline.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from pika_pipeline.submit_service import SubmitService

# SQS caps a message's visibility timeout at 12 hours.
MAX_VISIBILITY_SECONDS = 12 * 3600


def retry_delay(receive_count: int, base_seconds: int) -> int:
    """base, 2x base, 4x base... after the 1st, 2nd, 3rd... failed attempt."""
    delay: int = base_seconds * 2 ** max(0, receive_count - 1)
    return min(delay, MAX_VISIBILITY_SECONDS)


class SubmitBatch:
    def __init__(
        self,
        *,
        service: SubmitService,
        sqs: Any,
        max_attempts: int,
        retry_base_seconds: int,
    ) -> None:
        self._service = service
        self._sqs = sqs
        self._max_attempts = max_attempts
        self._retry_base_seconds = retry_base_seconds
        self._queue_url: Callable[[str], str] = functools.cache(self._lookup_queue_url)

    def handle_record(self, record: SQSRecord) -> None:
        """Raises to report the record as a batch item failure."""
        logger.thread_safe_clear_keys()
        logger.thread_safe_append_keys(message_id=record.message_id)
        receive_count = int(record.attributes.approximate_receive_count or 1)
        final = receive_count >= self._max_attempts
        try:
            self._service.process_message(record.body, final_attempt=final)
        except FalUnavailable:
            # Back off while fal recovers; after the last attempt, hand the message straight
            # back so its next receive moves it to the dead-letter queue.
            self._postpone(
                record, 0 if final else retry_delay(receive_count, self._retry_base_seconds)
            )
            raise
        except MalformedMessage:
            # It can never succeed: burn through the receive limit now, not over hours.
            self._postpone(record, 0)
            raise
        except Exception:
            # AWS failing past boto3's own retries: back off like a fal outage rather than wait
            # out the queue's long visibility timeout. A claim left behind is the reconciler's.
            logger.exception("Upload not processed; the message will be retried")
            with contextlib.suppress(Exception):
                self._postpone(record, retry_delay(receive_count, self._retry_base_seconds))
            raise

    def _postpone(self, record: SQSRecord, delay: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=self._queue_url(record.event_source_arn),
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=delay,
        )
        logger.info("Retrying the message later", extra={"retry_in_seconds": delay})

    def _lookup_queue_url(self, queue_arn: str) -> str:
        *_, account, name = queue_arn.split(":")
        url: str = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
            "QueueUrl"
        ]
        return url
