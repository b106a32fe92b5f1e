"""One SQS batch: failed records are reported (and only they), and each kind of failure comes back
after the delay that suits it. The submit service and SQS are stand-ins that record calls."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from pika_pipeline.aws.sqs_messages import QueueMessage
from pika_pipeline.errors import FalUnavailable, FalUnavailableKind, MalformedMessage
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.submit.batch import SubmitBatch, retry_delay
from pika_pipeline.submit.service import SubmitOutcome
from tests.support.pipeline import eventbridge_body

SAMPLE = json.loads((Path(__file__).parents[2] / "events" / "submit-eventbridge.json").read_text())
QUEUE_ARN = SAMPLE["Records"][0]["eventSourceARN"]


class Service:
    """Fails the bodies it is told to, with the exception it is told to."""

    def __init__(self, failures: dict[str, Exception]) -> None:
        self.failures = failures
        self.seen: list[tuple[str, bool]] = []

    def process_message(self, body: str, *, final_attempt: bool = False) -> list[Any]:
        self.seen.append((body, final_attempt))
        if body in self.failures:
            raise self.failures[body]
        return []


class Sqs:
    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken
        self.visibility: dict[str, int] = {}

    def get_queue_url(self, *, QueueName: str, QueueOwnerAWSAccountId: str) -> dict[str, str]:
        return {"QueueUrl": f"https://sqs.local/{QueueOwnerAWSAccountId}/{QueueName}"}

    def change_message_visibility(
        self,
        *,
        QueueUrl: str,
        ReceiptHandle: str,
        VisibilityTimeout: int,
    ) -> None:
        if self.broken:
            raise ConnectionError("sqs is unreachable")
        assert QueueUrl.endswith(QUEUE_ARN.rsplit(":", 1)[1])
        self.visibility[ReceiptHandle] = VisibilityTimeout


def record(body: str, receive_count: int = 1) -> dict[str, Any]:
    item: dict[str, Any] = copy.deepcopy(SAMPLE["Records"][0])
    item.update(messageId=f"id-{body}", receiptHandle=f"rh-{body}", body=body)
    item["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return item


def batch_of(service: Service, sqs: Sqs) -> SubmitBatch:
    return SubmitBatch(
        service=service,  # type: ignore[arg-type]
        sqs=sqs,  # type: ignore[arg-type]
        submit_max_attempts=5,
        submit_retry_base_seconds=30,
    )


def test_a_record_is_read_as_lambda_delivers_it() -> None:
    message = QueueMessage.from_record(SAMPLE["Records"][0])

    assert message.message_id == "059f36b4-87a3-44ab-83d2-661975830a7d"
    assert message.queue_arn == QUEUE_ARN
    assert message.receive_count == 1
    assert json.loads(message.body)["detail-type"] == "Object Created"


def test_only_the_failed_records_are_reported_in_the_order_they_came() -> None:
    service = Service(
        {
            "b": FalUnavailable("down", kind=FalUnavailableKind.SERVER_ERROR),
            "d": MalformedMessage("garbage"),
        }
    )
    sqs = Sqs()

    answer = batch_of(service, sqs).handle({"Records": [record(x) for x in "abcde"]})

    assert answer == {"batchItemFailures": [{"itemIdentifier": "id-b"}, {"itemIdentifier": "id-d"}]}
    assert sorted(body for body, _ in service.seen) == list("abcde")


class MeetingService(Service):
    """Each record waits until ten are in flight at once: only a concurrent batch gets past."""

    def __init__(self, in_flight: int) -> None:
        super().__init__({})
        self.barrier = threading.Barrier(in_flight, timeout=5)

    def process_message(self, body: str, *, final_attempt: bool = False) -> list[Any]:
        self.barrier.wait()  # BrokenBarrierError after the timeout: the record fails
        return super().process_message(body, final_attempt=final_attempt)


def test_the_records_of_a_full_batch_are_in_flight_at_once() -> None:
    service = MeetingService(in_flight=10)

    answer = batch_of(service, Sqs()).handle({"Records": [record(str(i)) for i in range(10)]})

    assert answer == {"batchItemFailures": []}
    assert sorted(body for body, _ in service.seen) == sorted(str(i) for i in range(10))


def test_an_empty_event_reports_nothing() -> None:
    assert batch_of(Service({}), Sqs()).handle({}) == {"batchItemFailures": []}


@pytest.mark.parametrize("receive_count", [1, 2, 3])
def test_a_fal_outage_backs_off_exponentially(receive_count: int) -> None:
    sqs = Sqs()

    batch_of(
        Service({"a": FalUnavailable("down", kind=FalUnavailableKind.SERVER_ERROR)}), sqs
    ).handle({"Records": [record("a", receive_count)]})

    assert sqs.visibility == {"rh-a": 30 * 2 ** (receive_count - 1)}


def test_the_last_attempt_is_marked_final_and_handed_straight_back() -> None:
    service = Service({"a": FalUnavailable("down", kind=FalUnavailableKind.SERVER_ERROR)})
    sqs = Sqs()

    batch_of(service, sqs).handle({"Records": [record("a", receive_count=5)]})

    assert service.seen == [("a", True)]
    assert sqs.visibility == {"rh-a": 0}  # its next receive moves it to the dead-letter queue


def test_a_malformed_message_comes_back_at_once_to_reach_the_dead_letter_queue() -> None:
    sqs = Sqs()

    batch_of(Service({"a": MalformedMessage("garbage")}), sqs).handle({"Records": [record("a")]})

    assert sqs.visibility == {"rh-a": 0}


def test_an_unexpected_error_fails_its_record_and_backs_off() -> None:
    sqs = Sqs()

    answer = batch_of(Service({"a": RuntimeError("boom")}), sqs).handle(
        {"Records": [record("a"), record("b")]}
    )

    assert answer == {"batchItemFailures": [{"itemIdentifier": "id-a"}]}
    assert sqs.visibility == {"rh-a": 30}


def test_a_failure_to_reschedule_still_reports_the_record() -> None:
    answer = batch_of(
        Service({"a": FalUnavailable("down", kind=FalUnavailableKind.SERVER_ERROR)}),
        Sqs(broken=True),
    ).handle({"Records": [record("a"), record("b")]})

    assert answer == {"batchItemFailures": [{"itemIdentifier": "id-a"}]}


def test_retry_delays_are_capped_at_sqs_maximum_visibility() -> None:
    assert retry_delay(1, 30) == 30
    assert retry_delay(30, 30) == 12 * 3600


class Dispatcher:
    def __init__(self) -> None:
        self.fills: list[bool] = []  # waiting_first, per fill
        self.own: list[frozenset[str]] = []  # the jobs the batch said it queued, per fill

    def fill(self, *, waiting_first: bool = False, own: frozenset[str] = frozenset()) -> int:
        self.fills.append(waiting_first)
        self.own.append(own)
        return 0


UPLOADS = {name: eventbridge_body("input", f"uploads/{name}.jpg", f"v-{name}") for name in "ac"}


class QueueingService(Service):
    """Queues a job for each upload event; anything else is a nudge."""

    def process_message(self, body: str, *, final_attempt: bool = False) -> list[Any]:
        super().process_message(body, final_attempt=final_attempt)
        return [SubmitOutcome.QUEUED] if body in UPLOADS.values() else []


def _job_id(name: str) -> str:
    return job_id_for(bucket="input", key=f"uploads/{name}.jpg", version=f"v-{name}")


@pytest.mark.parametrize(
    ("bodies", "waiting_first"),
    [
        ([UPLOADS["a"], "nudge-b", UPLOADS["c"]], False),
        (["nudge-a", "nudge-b"], True),
    ],
)
def test_one_fill_per_batch_reading_the_queue_first_when_the_batch_queued_nothing(
    bodies: list[str], waiting_first: bool
) -> None:
    dispatcher = Dispatcher()
    batch = SubmitBatch(
        service=QueueingService({}),  # type: ignore[arg-type]
        sqs=Sqs(),  # type: ignore[arg-type]
        submit_max_attempts=5,
        submit_retry_base_seconds=30,
        dispatcher=dispatcher,  # type: ignore[arg-type]
    )

    batch.handle({"Records": [record(body) for body in bodies]})

    assert dispatcher.fills == [waiting_first]
    # The fill is told which jobs the batch queued (it leaves other fills' new jobs to them).
    assert dispatcher.own == [frozenset() if waiting_first else {_job_id("a"), _job_id("c")}]
