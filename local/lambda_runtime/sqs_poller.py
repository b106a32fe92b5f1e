"""Polls an SQS queue and invokes the handler with SQS batch events, as Lambda's poller does.

Messages the handler reports in ``batchItemFailures`` (or all of them, if it raises) are left on
the queue: they come back after the visibility timeout, and moto's redrive policy moves them to
the dead-letter queue after ``maxReceiveCount`` receives, exactly as on AWS.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any

import boto3

from local.aws import ACCOUNT_ID, REGION
from local.lambda_runtime.pool import WorkerPool

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef


def lambda_record(message: MessageTypeDef, queue_arn: str) -> dict[str, Any]:
    body = message["Body"]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def poll_forever(
    *,
    pool: WorkerPool,
    queue_url: str,
    batch_size: int,
    report_failures: bool,
    stop: threading.Event,
) -> None:
    """Receives a batch whenever the function has a free slot, and runs each batch on its own
    worker, so up to the function's concurrency batches are in flight at once (the event
    source's MaximumConcurrency), and no message is received before a worker can take it."""
    sqs = boto3.client("sqs")
    queue_name = queue_url.rsplit("/", 1)[1]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue_name}"
    while not stop.is_set():
        pool.reserve()
        messages: list[MessageTypeDef] = []
        try:
            messages = [
                message
                for message in sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=min(batch_size, 10),
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            ]
        finally:
            if not messages:
                pool.unreserve()
        if messages:
            threading.Thread(
                target=_run_batch,
                args=(sqs, pool, queue_url, queue_arn, messages, report_failures),
                daemon=True,
            ).start()


def _run_batch(
    sqs: SQSClient,
    pool: WorkerPool,
    queue_url: str,
    queue_arn: str,
    messages: list[MessageTypeDef],
    report_failures: bool,
) -> None:
    invocation = pool.run({"Records": [lambda_record(m, queue_arn) for m in messages]})
    if invocation.error is not None:
        failed = {m["MessageId"] for m in messages}
    else:
        result = invocation.result
        failures = result.get("batchItemFailures", []) if isinstance(result, dict) else []
        failed = {f["itemIdentifier"] for f in failures} if report_failures else set()
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
            ],
        )
