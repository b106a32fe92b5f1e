"""Webhook function (public Function URL): fal's signed result -> video in S3 + job status."""

from __future__ import annotations

import base64
import functools
import json
from typing import TYPE_CHECKING, Any

from pika_pipeline.aws_clients import events_client, jobs_table
from pika_pipeline.config import WebhookSettings
from pika_pipeline.http_fetch import fetch_bytes
from pika_pipeline.job_events import JobEvents
from pika_pipeline.job_repository import JobRepository
from pika_pipeline.job_results import JobResults
from pika_pipeline.observability import flush_breakdowns, logger, metrics
from pika_pipeline.secrets_store import read_secret
from pika_pipeline.webhook_service import WebhookRequest, WebhookService
from pika_pipeline.webhook_verifier import JwksKeys, WebhookVerifier

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@functools.cache
def service() -> WebhookService:
    settings = WebhookSettings.from_environment()
    repository = JobRepository(
        lambda: jobs_table(settings.jobs_table), retention_days=settings.job_retention_days
    )
    return WebhookService(
        repository=repository,
        verifier=WebhookVerifier(
            JwksKeys(settings.fal_jwks_url, fetch_bytes),
            expected_user_id=settings.fal_user_id,
            tolerance_seconds=settings.timestamp_tolerance_seconds,
        ),
        results=JobResults.for_settings(
            settings,
            repository=repository,
            events=JobEvents(events_client(), settings.event_bus_name),
        ),
        token_key=lambda: read_secret(settings.webhook_token_secret),
        max_body_bytes=settings.max_body_bytes,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@flush_breakdowns
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")
    request = WebhookRequest(
        query=event.get("queryStringParameters") or {},
        headers={name.lower(): value for name, value in (event.get("headers") or {}).items()},
        body=body,
    )
    logger.thread_safe_clear_keys()  # the local runtime serves requests on threads
    response = service().handle(request)
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(response.body),
    }
