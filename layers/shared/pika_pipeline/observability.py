"""The observability singletons every module shares (structured logs and EMF metrics).

Tracer is left out on purpose: it imports aws_xray_sdk (~200 ms) even when tracing is off,
and the webhook's cold start races fal's 15 s delivery timeout.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()
