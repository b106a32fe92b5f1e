"""AWS cost per video, from the calls and durations measured in this run, at list prices.

Every quantity comes from a measurement of this run or from template.yaml: invocations and
their durations (warm submit of one record, warm webhook replay; cold-start init for the worst
case), MemorySize and architecture of each function, DynamoDB reads and writes and S3 calls per
job as the fault proxy counted them, the job item's size (DynamoDB bills per 1 KB written and
4 KB read), the image's size (fal downloads it from S3), the functions' log bytes per job, and
the number of global secondary indexes on the jobs table (each indexed write is written again).

Two totals: warm (clients and secrets cached, as in a steady stream of uploads) and worst case
(every invocation is a cold start: its INIT phase is billed, as Lambda does since 2025-08-01, and
each secret is fetched again). The target is checked against the worst case. Not included: S3
storage (depends on retention), the free tiers, and anything fal charges besides its price.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bench.template_info import functions, schedule_seconds
from local.template import load_template
from pika_pipeline.fal import pika
from pika_pipeline.fal.prices import usd_per_video

PRICES_AS_OF = (
    "AWS list prices for us-east-1 as published in 2025 (DynamoDB on-demand after its "
    "2024-11-01 price cut); not re-checked on the run date"
)
# USD, fal's price for a video of the endpoint the pipeline is built for (its price table).
FAL_PRICE_PER_VIDEO = float(usd_per_video(pika.ENDPOINT))
TARGET_SHARE = 0.0005  # 0.05 % of fal's price

PRICES: dict[str, tuple[float, str]] = {
    "lambda_gb_s_arm64": (0.0000133334, "$0.0000133334 per GB-s (arm64)"),
    "lambda_gb_s_x86_64": (0.0000166667, "$0.0000166667 per GB-s (x86_64)"),
    "lambda_request": (0.20 / 1e6, "$0.20 per million requests"),
    "dynamodb_wru": (0.625 / 1e6, "$0.625 per million WRU (on-demand)"),
    "dynamodb_rru": (0.125 / 1e6, "$0.125 per million RRU (on-demand)"),
    "s3_put": (0.005 / 1000, "$0.005 per 1,000 PUT/POST (S3 Standard)"),
    "s3_get": (0.0004 / 1000, "$0.0004 per 1,000 GET (S3 Standard)"),
    "s3_transfer_out_gb": (0.09, "$0.09 per GB out to the internet"),
    "eventbridge_event": (1.00 / 1e6, "$1.00 per million custom events"),
    "sqs_request": (0.40 / 1e6, "$0.40 per million requests (standard)"),
    "logs_ingest_gb": (0.50, "$0.50 per GB ingested (CloudWatch Logs)"),
    "secrets_api_call": (0.05 / 10000, "$0.05 per 10,000 API calls (Secrets Manager)"),
}
# START, END and REPORT lines Lambda itself writes per invocation, roughly.
PLATFORM_LOG_BYTES = 350


@dataclass(frozen=True)
class CostInputs:
    submit_calls_per_job: Counter[str]  # by operation, per job
    webhook_calls_per_job: Counter[str]
    secrets_calls_cold: float  # per video when every invocation is cold
    submit_seconds: float  # one warm invocation handling one record
    webhook_seconds: float  # one warm invocation
    submit_init_seconds: float
    webhook_init_seconds: float
    log_bytes_per_job: float
    job_item: dict[str, Any]
    image_bytes: int
    # Scheduled functions: (calls per idle run, seconds per run), measured on the idle stack.
    scheduled: dict[str, tuple[Counter[str], float]] = field(default_factory=dict)


@dataclass(frozen=True)
class CostLine:
    item: str
    quantity: float
    unit: str
    price_key: str
    cold_only: bool = False

    @property
    def usd(self) -> float:
        return self.quantity * PRICES[self.price_key][0]


@dataclass
class CostBreakdown:
    lines: list[CostLine] = field(default_factory=list)
    fixed_monthly: list[CostLine] = field(default_factory=list)  # whatever the video count
    memory_mb: dict[str, int] = field(default_factory=dict)
    item_bytes: int = 0
    index_count: int = 0

    @property
    def warm_usd(self) -> float:
        return sum(line.usd for line in self.lines if not line.cold_only)

    @property
    def worst_usd(self) -> float:
        return sum(line.usd for line in self.lines)

    @property
    def share(self) -> float:
        """Worst-case AWS cost as a fraction of fal's price."""
        return self.worst_usd / FAL_PRICE_PER_VIDEO

    def duration_headroom(self) -> float:
        """How many times longer the invocations could run before the worst case hits the
        target (durations measured here, on loopback, are the uncertain input)."""
        duration = sum(line.usd for line in self.lines if line.price_key.startswith("lambda_gb"))
        rest = self.worst_usd - duration
        budget = FAL_PRICE_PER_VIDEO * TARGET_SHARE - rest
        return budget / duration if duration else math.inf

    def image_bytes_at_target(self) -> float:
        """The image size at which the worst case reaches the target: fal downloads the image
        from S3, and that transfer out is the one cost that grows with the upload."""
        price = PRICES["s3_transfer_out_gb"][0] / 1e9
        transfer = sum(line.usd for line in self.lines if line.price_key == "s3_transfer_out_gb")
        return (FAL_PRICE_PER_VIDEO * TARGET_SHARE - (self.worst_usd - transfer)) / price


def dynamodb_item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: names plus values (numbers ~1 byte per 2 digits)."""

    def value_size(value: Any) -> int:
        if isinstance(value, str):
            return len(value.encode("utf-8"))
        if isinstance(value, bool) or value is None:
            return 1
        if isinstance(value, (int, float, Decimal)):
            digits = len(str(value).lstrip("-").replace(".", "").lstrip("0")) or 1
            return math.ceil(digits / 2) + 1
        if isinstance(value, (bytes, bytearray)):
            return len(value)
        if isinstance(value, (set, frozenset)):
            return sum(value_size(v) for v in value)
        if isinstance(value, (list, tuple)):
            return 3 + sum(value_size(v) + 1 for v in value)
        if isinstance(value, dict):
            return 3 + sum(len(str(k).encode()) + value_size(v) + 1 for k, v in value.items())
        return len(str(value))

    return sum(len(str(name).encode("utf-8")) + value_size(v) for name, v in item.items())


def _jobs_table_indexes(template: dict[str, Any]) -> int:
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::DynamoDB::Table" and "job_id" in str(
            resource.get("Properties", {}).get("KeySchema")
        ):
            return len(resource["Properties"].get("GlobalSecondaryIndexes", []))
    return 0


def compute(inputs: CostInputs) -> CostBreakdown:
    template = load_template()
    specs = functions(template)
    submit, webhook = specs["SubmitFunction"], specs["WebhookFunction"]
    breakdown = CostBreakdown(
        memory_mb={"SubmitFunction": submit.memory_mb, "WebhookFunction": webhook.memory_mb},
        item_bytes=dynamodb_item_bytes(inputs.job_item),
        index_count=_jobs_table_indexes(template),
    )
    calls = inputs.submit_calls_per_job + inputs.webhook_calls_per_job
    wru = math.ceil(breakdown.item_bytes / 1024) * (1 + breakdown.index_count)
    rru = math.ceil(breakdown.item_bytes / 4096)
    writes = sum(n for op, n in calls.items() if op in _DYNAMODB_WRITES)
    reads = sum(n for op, n in calls.items() if op in _DYNAMODB_READS)
    s3_gets = calls["s3.GetObject"] + 1  # + fal's download through the presigned URL
    s3_puts = sum(n for op, n in calls.items() if op in _S3_PUTS) + 1  # + the upload itself

    def gb_s(memory_mb: int, seconds: float) -> float:
        return memory_mb / 1024 * math.ceil(seconds * 1000) / 1000

    lines = breakdown.lines
    lines += [
        CostLine("Lambda requests (submit + webhook)", 2, "requests", "lambda_request"),
        CostLine(
            f"Lambda submit, {submit.memory_mb} MB x {inputs.submit_seconds * 1000:.0f} ms",
            gb_s(submit.memory_mb, inputs.submit_seconds),
            "GB-s",
            f"lambda_gb_s_{submit.architecture}",
        ),
        CostLine(
            f"Lambda webhook, {webhook.memory_mb} MB x {inputs.webhook_seconds * 1000:.0f} ms",
            gb_s(webhook.memory_mb, inputs.webhook_seconds),
            "GB-s",
            f"lambda_gb_s_{webhook.architecture}",
        ),
        CostLine(
            f"DynamoDB writes: {writes:g} x {wru} WRU (item {breakdown.item_bytes} B, "
            f"{breakdown.index_count} GSI)",
            writes * wru,
            "WRU",
            "dynamodb_wru",
        ),
        CostLine(
            f"DynamoDB strongly consistent reads: {reads:g}", reads * rru, "RRU", "dynamodb_rru"
        ),
        CostLine("S3 GETs (ranged read + fal's presigned download)", s3_gets, "GETs", "s3_get"),
        CostLine("S3 PUTs (the upload + the video)", s3_puts, "PUTs", "s3_put"),
        CostLine(
            f"S3 transfer out: fal downloads the image ({inputs.image_bytes / 1000:.0f} kB)",
            inputs.image_bytes / 1e9,
            "GB",
            "s3_transfer_out_gb",
        ),
        CostLine(
            "EventBridge completion events",
            calls["events.PutEvents"],
            "events",
            "eventbridge_event",
        ),
        CostLine("SQS: EventBridge send, poller receive, delete", 3, "requests", "sqs_request"),
        CostLine(
            "CloudWatch Logs ingested (measured + Lambda's own lines)",
            (inputs.log_bytes_per_job + 2 * PLATFORM_LOG_BYTES) / 1e9,
            "GB",
            "logs_ingest_gb",
        ),
        CostLine(
            f"Lambda INIT (cold) submit {inputs.submit_init_seconds * 1000:.0f} ms (with what "
            f"its first job loads) + webhook {inputs.webhook_init_seconds * 1000:.0f} ms",
            gb_s(submit.memory_mb, inputs.submit_init_seconds)
            + gb_s(webhook.memory_mb, inputs.webhook_init_seconds),
            "GB-s",
            f"lambda_gb_s_{submit.architecture}",
            cold_only=True,
        ),
        CostLine(
            "Secrets Manager reads (cold containers)",
            inputs.secrets_calls_cold,
            "calls",
            "secrets_api_call",
            cold_only=True,
        ),
    ]
    breakdown.fixed_monthly = _scheduled_lines(inputs, template, rru)
    return breakdown


def _scheduled_lines(inputs: CostInputs, template: dict[str, Any], rru: int) -> list[CostLine]:
    """A month (30 days) of each scheduled function's idle runs."""
    specs = functions(template)
    lines = []
    for name, (calls, seconds) in inputs.scheduled.items():
        spec = specs.get(name)
        if spec is None:
            continue
        for interval in schedule_seconds(spec, template):
            runs = 30 * 86400 / interval
            every = f"{name} every {interval // 60} min"
            reads = sum(n for op, n in calls.items() if op in _DYNAMODB_READS)
            lines += [
                CostLine(f"{every}: {runs:.0f} requests", runs, "requests", "lambda_request"),
                CostLine(
                    f"{every}: {spec.memory_mb} MB x {seconds * 1000:.0f} ms per run",
                    runs * spec.memory_mb / 1024 * math.ceil(seconds * 1000) / 1000,
                    "GB-s",
                    f"lambda_gb_s_{spec.architecture}",
                ),
                CostLine(
                    f"{every}: {reads:g} reads per run (index queries)",
                    runs * reads * rru,
                    "RRU",
                    "dynamodb_rru",
                ),
            ]
    return lines


_DYNAMODB_WRITES = frozenset({"dynamodb.UpdateItem", "dynamodb.PutItem", "dynamodb.DeleteItem"})
_DYNAMODB_READS = frozenset({"dynamodb.GetItem", "dynamodb.Query"})
_S3_PUTS = frozenset(
    {
        "s3.PutObject",
        "s3.CreateMultipartUpload",
        "s3.UploadPart",
        "s3.CompleteMultipartUpload",
        "s3.AbortMultipartUpload",
    }
)
