"""Polls an SQS queue and invokes the handler with SQS batch events, as Lambda's poller does.

Messages the handler reports in ``batchItemFailures`` (or all of them, if it raises) are left on
the queue: they come back after the visibility timeout, and moto's redrive policy moves them to
the dead-letter queue after ``maxReceiveCount`` receives, exactly as on AWS.
"""

from __future__ import annotations

import hashlib
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3

from local.aws import ACCOUNT_ID, REGION
from local.lambda_runtime.context import LocalLambdaContext

if TYPE_CHECKING:
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
    handler: Callable[[dict[str, Any], Any], Any],
    function_name: str,
    memory: int,
    timeout: int,
    queue_url: str,
    batch_size: int,
    report_failures: bool,
    stop: threading.Event,
) -> None:
    sqs = boto3.client("sqs")
    queue_name = queue_url.rsplit("/", 1)[1]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue_name}"
    while not stop.is_set():
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(batch_size, 10),
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            continue
        event = {"Records": [lambda_record(m, queue_arn) for m in messages]}
        context = LocalLambdaContext(function_name, memory, timeout)
        try:
            result = handler(event, context)
            failures = result.get("batchItemFailures", []) if isinstance(result, dict) else []
            failed = {f["itemIdentifier"] for f in failures} if report_failures else set()
        except Exception:
            traceback.print_exc()
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
