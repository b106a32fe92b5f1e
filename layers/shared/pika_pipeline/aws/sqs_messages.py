"""SQS records as Lambda delivers them, and putting one off: what the submit batch and the
notifier share (each backs off through the message's visibility, not by sleeping)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pika_pipeline.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

# SQS caps a message's visibility timeout at 12 hours.
MAX_VISIBILITY_SECONDS = 12 * 3600


@dataclass(frozen=True)
class QueueMessage:
    """The parts of an SQS record (as Lambda delivers it) the functions use."""

    message_id: str
    body: str
    receipt_handle: str
    queue_arn: str
    receive_count: int

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> QueueMessage:
        attributes = record.get("attributes") or {}
        return cls(
            message_id=str(record.get("messageId", "")),
            body=str(record.get("body", "")),
            receipt_handle=str(record.get("receiptHandle", "")),
            queue_arn=str(record.get("eventSourceARN", "")),
            receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
        )


class Postponer:
    """Makes a received message come back after ``delay`` seconds (0: at once)."""

    def __init__(self, sqs: SQSClient) -> None:
        self._sqs = sqs
        self._queue_url: Callable[[str], str] = functools.cache(self._lookup_queue_url)

    def postpone(self, message: QueueMessage, delay: int) -> None:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url(message.queue_arn),
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=min(delay, MAX_VISIBILITY_SECONDS),
            )
        except Exception:
            # The message still comes back, after the queue's own visibility timeout.
            logger.exception("Could not reschedule the message")
            return
        logger.info("Retrying the message later", extra={"retry_in_seconds": delay})

    def queue_url(self, queue_arn: str) -> str:
        return self._queue_url(queue_arn)

    def _lookup_queue_url(self, queue_arn: str) -> str:
        *_, account, name = queue_arn.split(":")
        url: str = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
            "QueueUrl"
        ]
        return url
