"""Reconciler function (on a schedule): settles jobs whose webhook never came or whose submit
crashed, through the same code as the submit and webhook paths."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from pika_pipeline.aws_clients import events_client, jobs_table, s3_client
from pika_pipeline.config import ReconcilerSettings
from pika_pipeline.fal_on_demand import fal_gateway_on_demand
from pika_pipeline.job_events import JobEvents
from pika_pipeline.job_repository import JobRepository, OpenJobs
from pika_pipeline.job_results import JobResults
from pika_pipeline.observability import flush_breakdowns, logger, metrics
from pika_pipeline.reconciler import Reconciler
from pika_pipeline.secrets_store import read_secret
from pika_pipeline.submit_service import SubmitService

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Stop picking up jobs with this much time left, so a run never dies half-way through a copy.
SAFETY_MARGIN_MS = 60_000


@functools.cache
def settings() -> ReconcilerSettings:
    return ReconcilerSettings.from_environment()


@functools.cache
def reconciler() -> Reconciler:
    config = settings()

    def table() -> Any:
        return jobs_table(config.jobs_table)

    repository = JobRepository(table, retention_days=config.job_retention_days)
    events = JobEvents(events_client(), config.event_bus_name)
    fal = fal_gateway_on_demand(config)
    return Reconciler(
        open_jobs=OpenJobs(table),
        repository=repository,
        fal=fal,
        results=JobResults.for_settings(config, repository=repository, events=events),
        submit=SubmitService(
            settings=config,
            repository=repository,
            s3=s3_client(),
            fal=fal,
            token_key=lambda: read_secret(config.webhook_token_secret),
            events=events,
        ),
        events=events,
        recheck_seconds=config.reconcile_after_seconds,
        deadline_seconds=config.deadline_seconds,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@flush_breakdowns
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return reconciler().run(
        max_jobs=settings().max_jobs,
        out_of_time=lambda: context.get_remaining_time_in_millis() < SAFETY_MARGIN_MS,
    )
