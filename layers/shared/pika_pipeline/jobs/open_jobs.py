"""The reconciler's view of the jobs table: open jobs due for a check, from a sparse index.

Open (non-final) jobs carry ``open_shard`` and ``next_check_at``, which put them in the
``OpenJobs`` index; a final status removes both, so finished jobs never cost a read here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from boto3.dynamodb.conditions import Attr, Key

from pika_pipeline.jobs.expressions import Update
from pika_pipeline.jobs.job import Job
from pika_pipeline.jobs.store_errors import jobs_table_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

OPEN_JOBS_INDEX = "OpenJobs"
# Spreads open jobs over a few index partitions; "oldest first" holds within each shard.
OPEN_SHARDS = 4


def open_shard(job_id: str) -> str:
    return f"open-{int(job_id[:8], 16) % OPEN_SHARDS}"


class OpenJobs:
    """Open jobs due for a check, oldest first within each shard, from the sparse index."""

    def __init__(self, table: Callable[[], Table]) -> None:
        self._table_for_thread = table

    def due(self, *, now_epoch: int, limit: int) -> list[Job]:
        jobs: list[Job] = []
        for shard in range(OPEN_SHARDS):
            if len(jobs) >= limit:
                break
            with jobs_table_errors("reading the open jobs"):
                response = self._table_for_thread().query(
                    IndexName=OPEN_JOBS_INDEX,
                    KeyConditionExpression=Key("open_shard").eq(f"open-{shard}")
                    & Key("next_check_at").lte(now_epoch),
                    Limit=limit - len(jobs),
                )
            jobs.extend(Job(item) for item in response.get("Items", []))
        return jobs

    def check_again_at(self, job_id: str, when_epoch: int) -> None:
        """Moves a job to the back of the line, so a backlog cannot starve the rest.

        Raises JobConflict when the job has finished meanwhile (or is gone): nothing to reschedule.
        """
        with jobs_table_errors(f"job {job_id} is no longer open"):
            self._table_for_thread().update_item(
                Key={"job_id": job_id},
                ConditionExpression=Attr("open_shard").exists(),
                **Update().set("next_check_at", when_epoch).arguments(),
            )
