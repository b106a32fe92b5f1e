"""A re-upload's video takes the readable key in steps: the older upload's video is copied aside
to its staging key, its record moved there, the newer video copied in, its staging copy deleted.
A webhook function SIGKILLed between any two of those steps leaves no stray copy once fal's
retry of the delivery has run: listing the whole output bucket, each completed job has one
object carrying its job id, at its record's ``output_key``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.stack import LocalStack
from tests.support.pipeline import Pipeline, eventually

# Its own stack: the test kills a function's processes, which the shared stack's tests share.
pytestmark = pytest.mark.stack

# Longer than the test needs to kill the function, shorter than botocore's 60 s read timeout.
HELD_SECONDS = 45


@pytest.fixture(scope="module")
def killable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Pipeline]]:
    state_dir: Path = tmp_path_factory.mktemp("killed-video-move-stack")
    parameters = {"SubmitRetryBaseSeconds": "1", "FalTimeoutSeconds": "2"}
    stack = LocalStack(state_dir, parameters=parameters, run_schedules=False)
    with stack as info:
        yield stack, Pipeline(info)


@dataclass(frozen=True)
class Race:
    older: dict[str, Any]  # COMPLETED at the readable key
    newer_id: str  # SUBMITTED; fal's delivery of its result comes a few seconds late
    readable: str

    @property
    def aside(self) -> str:
        """Where the older video goes: its own staging key."""
        return f"videos/{self.older['job_id']}/{self.older['completed_request_id']}.mp4"


@dataclass(frozen=True)
class KillPoint:
    """Where the newer job's webhook is caught: a fault rule holding one of its AWS calls, and
    what a user sees once the function got there."""

    rule: Callable[[Race], dict[str, Any]]
    caught: Callable[[Pipeline, Race], bool]


def _job_id_of(pipeline: Pipeline, key: str) -> str | None:
    head = pipeline.s3.head_object(Bucket=pipeline.output_bucket, Key=key)
    return head["Metadata"].get("job-id")


def _exists(pipeline: Pipeline, key: str) -> bool:
    listed = pipeline.s3.list_objects_v2(Bucket=pipeline.output_bucket, Prefix=key)
    return any(o["Key"] == key for o in listed.get("Contents", []))


KILL_POINTS = {
    # the older record names its staging key; the readable key still holds the older video
    "after the older record moved aside": KillPoint(
        rule=lambda race: {
            "service": "dynamodb",
            "operation": "UpdateItem",
            "contains": race.older["job_id"],
            "times": 1,
            "reply_delay_seconds": HELD_SECONDS,
        },
        caught=lambda pipeline, race: (
            (pipeline.job(race.older["job_id"]) or {}).get("output_key") == race.aside
            and _job_id_of(pipeline, race.readable) == race.older["job_id"]
        ),
    ),
    # the older video is copied aside; its record still names the readable key
    "after the older video was copied aside": KillPoint(
        rule=lambda race: {
            "service": "s3",
            "operation": "PutObject",  # the proxy's name for CopyObject too
            "contains": f"videos/{race.older['job_id']}/",
            "times": 1,
            "reply_delay_seconds": HELD_SECONDS,
        },
        caught=lambda pipeline, race: (
            _exists(pipeline, race.aside)
            and (pipeline.job(race.older["job_id"]) or {}).get("output_key") == race.readable
        ),
    ),
    # the newer video is at the readable key; its staging copy is still there
    "before the newer staging copy was deleted": KillPoint(
        rule=lambda race: {
            "service": "s3",
            "operation": "DeleteObject",
            "contains": f"videos/{race.newer_id}/",
            "times": 1,
            "hold_seconds": HELD_SECONDS,
        },
        caught=lambda pipeline, race: len(pipeline.video_objects(race.newer_id)) == 2,
    ),
}


def _race(pipeline: Pipeline) -> Race:
    folder = f"kill-{uuid.uuid4().hex[:6]}"
    key = f"uploads/{folder}/cat.jpg"
    readable = f"videos/{folder}/cat.mp4"
    older = pipeline.wait_for_job(pipeline.upload({"prompt": "first", "duration": "1"}, key=key))
    assert older["output_key"] == readable
    # the re-upload's webhook comes 5 s after fal finished: time to aim a fault at its calls
    pipeline.fal_faults(delivery=["late"], late_seconds=5)
    newer_id = pipeline.upload({"prompt": "second", "duration": "1"}, key=key)
    pipeline.wait_for_status(newer_id, "SUBMITTED")
    return Race(older=older, newer_id=newer_id, readable=readable)


def _videos_by_job(pipeline: Pipeline) -> dict[str, list[str]]:
    """Every object in the output bucket, by the job id its metadata carries."""
    by_job: dict[str, list[str]] = {}
    paginator = pipeline.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=pipeline.output_bucket):
        for listed in page.get("Contents", []):
            job_id = _job_id_of(pipeline, listed["Key"]) or "(none)"
            by_job.setdefault(job_id, []).append(listed["Key"])
    return {job_id: sorted(keys) for job_id, keys in by_job.items()}


def _completed_jobs(pipeline: Pipeline) -> dict[str, str]:
    """Each COMPLETED job's ``output_key``."""
    jobs: dict[str, str] = {}
    scan: dict[str, Any] = {}
    while True:
        page = pipeline.table.scan(**scan)
        for item in page["Items"]:
            if item.get("status") == "COMPLETED":
                jobs[str(item["job_id"])] = str(item["output_key"])
        if "LastEvaluatedKey" not in page:
            return jobs
        scan = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_a_webhook_killed_while_moving_a_reuploads_video_leaves_no_stray_copy(
    killable: tuple[LocalStack, Pipeline], kill_point: str
) -> None:
    stack, pipeline = killable
    point = KILL_POINTS[kill_point]
    # given an upload whose video is at the readable key, and a newer upload of that key
    pipeline.aws_faults_reset()  # the previous case's spent rule
    race = _race(pipeline)
    pipeline.aws_faults(**point.rule(race))

    # when the newer job's webhook function is caught at that point and SIGKILLed
    eventually(lambda: any(rule["fired"] for rule in pipeline.aws_fault_rules()) or None)
    eventually(lambda: point.caught(pipeline, race) or None)
    stack.kill_and_restart("WebhookFunction")

    # then fal's retry of the delivery completes it
    newer = pipeline.wait_for_job(race.newer_id, timeout=90)
    older = pipeline.job(race.older["job_id"])
    assert older is not None
    (request,) = pipeline.fal_requests_for(race.newer_id)
    assert not isinstance(request["deliveries"][0]["status"], int)  # the killed delivery
    assert newer["status"] == older["status"] == "COMPLETED"
    assert newer["output_key"] == race.readable
    assert older["output_key"] == race.aside
    head = pipeline.s3.head_object(Bucket=pipeline.output_bucket, Key=race.readable)
    assert head["Metadata"]["job-id"] == race.newer_id
    assert head["Metadata"]["fal-request-id"] == newer["completed_request_id"]
    # and the whole bucket: one object per completed job, where its record says, nothing else
    completed = _completed_jobs(pipeline)
    assert _videos_by_job(pipeline) == {job_id: [key] for job_id, key in completed.items()}
