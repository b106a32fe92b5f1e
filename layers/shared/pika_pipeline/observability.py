"""The observability singletons every module shares (structured logs and EMF metrics).

Tracer is left out on purpose: it imports aws_xray_sdk even when tracing is off, which costs
cold start and layer size (both measured by `make bench`, docs/PERFORMANCE.md), and the webhook's
cold start races fal's 15 s delivery timeout.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable
from enum import StrEnum

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()
metrics = Metrics()


class Metric(StrEnum):
    """Every metric the code emits (namespace ``PikaPipeline``); the dashboard and alarms in
    template.yaml may watch only these."""

    UPLOADS_RECEIVED = "UploadsReceived"
    MALFORMED_MESSAGES = "MalformedMessages"
    DUPLICATE_UPLOADS = "DuplicateUploads"
    JOBS_SUBMITTED = "JobsSubmitted"
    SUBMIT_LATENCY = "SubmitLatency"
    JOBS_REJECTED = "JobsRejected"
    FAL_ERRORS = "FalErrors"
    VIDEOS_COMPLETED = "VideosCompleted"
    VIDEOS_FAILED = "VideosFailed"
    VIDEO_BYTES = "VideoBytes"
    GENERATION_SECONDS = "GenerationSeconds"
    DUPLICATE_DELIVERIES = "DuplicateDeliveries"
    EXTRA_FAL_RESULTS = "ExtraFalResults"
    WEBHOOKS_REJECTED = "WebhooksRejected"
    EVENTS_NOT_PUBLISHED = "EventsNotPublished"
    # A final job's event the notifier had not acknowledged, published again by the reconciler.
    EVENTS_REPUBLISHED = "EventsRepublished"
    # ... and one it gave up on after MAX_REPUBLISHES (jobs/event_outbox.py): a webhook lost.
    EVENTS_NEVER_ACKNOWLEDGED = "EventsNeverAcknowledged"
    JOBS_RECOVERED = "JobsRecovered"
    # fal's request history could not be read: a crashed claim waits instead of being resubmitted.
    FAL_HISTORY_UNAVAILABLE = "FalHistoryUnavailable"
    JOBS_EXPIRED = "JobsExpired"
    JOBS_GIVEN_UP = "JobsGivenUp"
    RECONCILE_ERRORS = "ReconcileErrors"
    OLDEST_OPEN_JOB_SECONDS = "OldestOpenJobSeconds"
    NOTIFICATION_ATTEMPTS = "NotificationAttempts"
    NOTIFICATIONS_DELIVERED = "NotificationsDelivered"
    NOTIFICATIONS_FAILED = "NotificationsFailed"
    JOBS_QUEUED = "JobsQueued"
    FAL_IN_FLIGHT = "FalInFlight"
    OLDEST_QUEUED_SECONDS = "OldestQueuedSeconds"
    DISPATCH_PAUSED_SECONDS = "DispatchPausedSeconds"
    QUEUE_WAIT_SECONDS = "QueueWaitSeconds"
    DISPATCH_LATENCY = "DispatchLatency"
    SPEND_USD = "SpendUSD"  # gauge: what the UTC day has reserved for fal (spent or in flight)
    BUDGET_REMAINING_USD = "BudgetRemainingUSD"  # gauge: the daily budget minus SpendUSD


_breakdowns: Counter[tuple[Metric, tuple[tuple[str, str], ...]]] = Counter()
_breakdowns_lock = threading.Lock()


def count(name: Metric, **dimension: str) -> None:
    """Adds 1 to a metric; with a dimension (an error code, a reason) also to its breakdown.

    Breakdowns are flushed by ``flush_breakdowns`` once the invocation's threads are done:
    printing them from worker threads could interleave with other output and break the EMF line.
    """
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if dimension:
        with _breakdowns_lock:
            _breakdowns[(name, tuple(sorted(dimension.items())))] += 1


def flush_breakdowns[**P, R](handler: Callable[P, R]) -> Callable[P, R]:
    """Handler decorator: writes the dimensioned metrics, each alone so that its dimension does
    not leak onto the invocation's other metrics (alarms watch the totals, dashboards the parts)."""

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return handler(*args, **kwargs)
        finally:
            with _breakdowns_lock:
                pending = list(_breakdowns.items())
                _breakdowns.clear()
            for (name, dimensions), value in pending:
                with single_metric(
                    name=name,
                    unit=MetricUnit.Count,
                    value=value,
                    default_dimensions=metrics.default_dimensions,
                ) as metric:
                    for key, dimension_value in dimensions:
                        metric.add_dimension(name=key, value=dimension_value)

    return wrapper
