"""The observability singletons every module shares (structured logs and EMF metrics).

Tracer is left out on purpose: it imports aws_xray_sdk (~200 ms) even when tracing is off,
and the webhook's cold start races fal's 15 s delivery timeout.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()
metrics = Metrics()


def count(name: str, **dimension: str) -> None:
    """Adds 1 to a metric; with a dimension (an error code, a reason) also to its breakdown,
    flushed alone so the dimension does not leak onto the invocation's other metrics."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if not dimension:
        return
    # The same metric once more, broken down (alarms watch the total, dashboards the parts).
    with single_metric(
        name=name, unit=MetricUnit.Count, value=1, default_dimensions=metrics.default_dimensions
    ) as metric:
        for key, value in dimension.items():
            metric.add_dimension(name=key, value=value)
