"""Webhook function (public Function URL): fal's signed result -> video in S3 + job status."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from pika_pipeline import wiring
from pika_pipeline.config.recorder import WebhookSettings
from pika_pipeline.observability import flush_breakdowns, logger, metrics
from pika_pipeline.webhook.service import WebhookRequest, WebhookService

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@functools.cache
def service() -> WebhookService:
    return wiring.webhook_service(WebhookSettings.from_environment())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@flush_breakdowns
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Not Powertools' LambdaFunctionUrlEvent: its decoded_body is UTF-8 text, not the signed bytes,
    # and importing it loads every Powertools data class (~12 ms more cold start, `make bench`).
    request = WebhookRequest(
        query=event.get("queryStringParameters") or {},
        headers={name.lower(): value for name, value in (event.get("headers") or {}).items()},
        body=event.get("body") or "",
        is_base64_encoded=bool(event.get("isBase64Encoded")),
    )
    response = service().handle(request)
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(response.body),
    }
