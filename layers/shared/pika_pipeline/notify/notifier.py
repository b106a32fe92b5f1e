"""The notifier: completion events from its own queue become signed Standard Webhooks deliveries.

Fed by NotifyRule (the pipeline's EventBridge events -> NotifyQueue), so the events stay the one
source and a slow or dead receiver delays nothing but this queue. Each SQS message is one
delivery: an event bound for two endpoints (NotifyUrl and the upload's callback-url) is first
split into one message per endpoint, so each retries on its own and a receiver that answered is
never sent the message again. A failed attempt is retried on a schedule close to the spec's
(5 s, 5 min, 30 min, 2 h, 5 h, 10 h...) through the message's visibility, as submit/batch.py
backs off; after the last attempt the next receive moves it to the dead-letter queue.

It also acknowledges each job event it takes (jobs/event_outbox.py), NotifyUrl or not: the event
reached the bus, so the reconciler need not publish it again. That proves nothing about delivery,
which the queue's retries and dead-letter queue look after.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pika_pipeline.aws.sqs_messages import MAX_VISIBILITY_SECONDS, Postponer, QueueMessage
from pika_pipeline.jobs.events import COMPLETED, FAILED
from pika_pipeline.notify.delivery import Outcome, WebhookSender
from pika_pipeline.notify.messages import NotAnEvent, webhook_message
from pika_pipeline.notify.signing import signature_header, signing_keys
from pika_pipeline.observability import Metric, count, logger

if TYPE_CHECKING:
    from datetime import datetime

    from mypy_boto3_sqs.client import SQSClient


def retry_delay(receive_count: int, delays: Sequence[int]) -> int:
    """The wait after the ``receive_count``-th failed attempt; the last delay repeats."""
    return min(delays[min(receive_count, len(delays)) - 1], MAX_VISIBILITY_SECONDS)


class RetryLater(Exception):
    """The attempt failed and the message comes back after its delay."""


class Notifier:
    def __init__(
        self,
        *,
        sqs: SQSClient,
        sender: WebhookSender,
        secret: Callable[[], str],
        presign: Callable[[str, str], str],
        acknowledge: Callable[[str, str], bool],
        notify_url: str,
        retry_delays: Sequence[int],
        max_attempts: int,
        now: Callable[[], datetime],
        workers: int = 10,
    ) -> None:
        self._sqs = sqs
        self._sender = sender
        self._secret = secret
        self._presign = presign
        self._acknowledge = acknowledge
        self._notify_url = notify_url
        self._retry_delays = tuple(retry_delays)
        self._max_attempts = max_attempts
        self._now = now
        self._postponer = Postponer(sqs)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")

    def handle(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        records = [QueueMessage.from_record(r) for r in event.get("Records") or ()]
        succeeded = list(self._pool.map(self._succeeds, records))
        return {
            "batchItemFailures": [
                {"itemIdentifier": record.message_id}
                for record, ok in zip(records, succeeded, strict=True)
                if not ok
            ]
        }

    def _succeeds(self, record: QueueMessage) -> bool:
        logger.thread_safe_clear_keys()
        logger.thread_safe_append_keys(message_id=record.message_id)
        try:
            self.handle_record(record)
        except RetryLater:
            return False
        except Exception:
            logger.exception("Notification not processed; the message will be retried")
            self._postponer.postpone(record, retry_delay(record.receive_count, self._retry_delays))
            return False
        return True

    def handle_record(self, record: QueueMessage) -> None:
        try:
            message = json.loads(record.body)
            event, destination = (
                (message["event"], str(message["destination"]))
                if "destination" in message
                else (message, None)
            )
            webhook = webhook_message(event, presign=self._presign)
        except (NotAnEvent, KeyError, TypeError, ValueError) as exc:
            logger.error("Not a completion event; dropped", extra={"reason": str(exc)})
            return
        logger.thread_safe_append_keys(
            webhook_id=webhook.msg_id,
            webhook_type=webhook.type,
            job_id=event["detail"].get("job_id"),
        )
        if destination is None:
            # The event as published, not a split of it: acknowledged once here (again only
            # when a failed delivery brings the message back: a condition that finds no mark).
            self._acknowledge_event(event)
            destinations = list(
                dict.fromkeys(url for url in (self._notify_url, webhook.callback_url) if url)
            )
            if not destinations:
                return  # no NotifyUrl and no callback for this job: nobody to tell
            if len(destinations) > 1:
                self._split(record, event, destinations)
                return
            destination = destinations[0]
        self._deliver(record, destination, webhook.msg_id, webhook.body)

    def _acknowledge_event(self, event: Mapping[str, Any]) -> None:
        if event.get("detail-type") not in (COMPLETED, FAILED):
            return  # a batch summary has its own lease (batches/announcer.py)
        detail = event["detail"]
        try:
            self._acknowledge(str(detail["job_id"]), str(detail["status"]))
        except Exception as exc:
            # The mark stays and the reconciler publishes the event again: the same webhook-id,
            # which receivers deduplicate on. Delivering now matters more.
            logger.warning("Could not acknowledge the job's event", extra={"reason": str(exc)})

    def _deliver(self, record: QueueMessage, url: str, msg_id: str, body: bytes) -> None:
        now = self._now()
        timestamp = int(now.timestamp())
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                signing_keys(self._secret()).active(now),
                msg_id=msg_id,
                timestamp=timestamp,
                body=body,
            ),
        }
        started = time.monotonic()
        outcome, reason = self._sender.post(url, body=body, headers=headers)
        if outcome is not Outcome.NOT_ALLOWED:
            count(Metric.NOTIFICATION_ATTEMPTS, outcome=outcome)
        log = {
            "outcome": outcome,
            "reason": reason,
            "attempt": record.receive_count,
            "seconds": round(time.monotonic() - started, 3),
        }
        if outcome is Outcome.DELIVERED:
            count(Metric.NOTIFICATIONS_DELIVERED)
            logger.info("Webhook delivered", extra=log)
            return
        if outcome.final:  # 410, or a URL the guard refuses: no later attempt can do better
            count(Metric.NOTIFICATIONS_FAILED, reason=outcome)
            logger.warning("Webhook not delivered; not retried", extra=log)
            return
        if record.receive_count >= self._max_attempts:
            count(Metric.NOTIFICATIONS_FAILED, reason="dead_lettered")
            logger.error("Webhook failed every attempt; to the dead-letter queue", extra=log)
            self._postponer.postpone(
                record, 0
            )  # its next receive moves it to the dead-letter queue
            raise RetryLater
        delay = retry_delay(record.receive_count, self._retry_delays)
        logger.warning("Webhook not delivered; retrying", extra={**log, "retry_in_seconds": delay})
        self._postponer.postpone(record, delay)
        raise RetryLater

    def _split(self, record: QueueMessage, event: Any, destinations: list[str]) -> None:
        """One message per destination, each then retried on its own schedule."""
        response = self._sqs.send_message_batch(
            QueueUrl=self._postponer.queue_url(record.queue_arn),
            Entries=[
                {
                    "Id": str(index),
                    "MessageBody": json.dumps({"destination": url, "event": event}),
                }
                for index, url in enumerate(destinations)
            ],
        )
        if response.get("Failed"):
            # Splitting again later may repeat a destination: same webhook-id, which receivers
            # deduplicate on; losing one would be worse.
            raise RuntimeError(f"could not split the event: {response['Failed']}")
