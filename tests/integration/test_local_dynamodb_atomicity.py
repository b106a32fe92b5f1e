"""The local stack's DynamoDB keeps DynamoDB's promise: a conditional write is atomic per item.

The pipeline's exactly-once claim rests on it; moto alone does not keep it under concurrent
requests (local/moto_server.py serialises the requests that name the same item).
"""

from __future__ import annotations

import threading
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from local.aws import REGION, aws_environment
from pika_pipeline.aws.errors import error_code
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.stack

WRITERS = 16
ROUNDS = 8


def _race_for(pipeline: Pipeline, job_id: str) -> list[str]:
    """WRITERS threads claim the same new item at once; the names of those told they won."""
    barrier = threading.Barrier(WRITERS)
    winners: list[str] = []
    outcomes: list[str] = []

    def claim(name: str) -> None:
        outcome = "won"
        # One session per thread, like the submit function's per-thread tables.
        env = aws_environment(pipeline.info.aws_endpoint)
        table = (
            boto3.session.Session(
                aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                region_name=REGION,
            )
            .resource("dynamodb", endpoint_url=pipeline.info.aws_endpoint)
            .Table(pipeline.table.name)
        )
        barrier.wait()
        try:
            table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET claimed_by = :me",
                ConditionExpression="attribute_not_exists(claimed_by)",
                ExpressionAttributeValues={":me": name},
            )
        except ClientError as exc:
            outcome = error_code(exc)
        outcomes.append(outcome)
        if outcome == "won":
            winners.append(name)

    threads = [threading.Thread(target=claim, args=(f"writer-{i}",)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(outcomes)) == ["ConditionalCheckFailedException", "won"]
    return winners


def test_concurrent_conditional_writes_to_one_item_have_exactly_one_winner(
    pipeline: Pipeline,
) -> None:
    for _ in range(ROUNDS):
        job_id = f"atomicity-{uuid.uuid4().hex}"

        winners = _race_for(pipeline, job_id)

        assert len(winners) == 1
        stored = pipeline.table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
        assert stored["claimed_by"] == winners[0]
        pipeline.table.delete_item(Key={"job_id": job_id})
