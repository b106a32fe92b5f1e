"""Submit: one SQS batch of 10 records through the real handler, against one record.

The handler runs in a subprocess (``bench.submit_child``) whose environment is exactly the one
the local stack gives the submit function (the template's variables, AWS through the fault
proxy, fal through the emulator's host and CA), importing ``app`` from functions/submit with the
layer after it, as Lambda does. It is called directly with SQS events built here: each record
names an image put into a bucket no rule watches, so only these events start jobs. Every record
is a new upload (a fresh version), so every one claims, submits to fal and records the request
id: the full happy path. Warm-up calls come first (a batch of 10, then one record: clients,
secrets, the handler's ten worker threads and their per-thread DynamoDB resources), then
1-record and 10-record batches alternate. The child also reports the handler's CPU time (all
threads), which shows how much of a batch is the function's own work.

The emulator is told to hold its renders for an hour, so no rendering competes for the CPU while
the handler is timed (the submits themselves are answered at once). The stack's dispatch gate is
wide enough for every job of a run (``bench.__main__.STACK_PARAMETERS``), and the jobs are ended
afterwards, so the next run finds its slots free: every record is dispatched at once, as an upload
to an idle pipeline is.

Locally every service answers as fast as this machine's cores allow, and they are Python
processes competing with the handler for those cores: a batch then measures CPU contention, not
the overlap of waits that concurrency buys on AWS. So the judged run adds the round-trip times
the functions see in production (``NETWORK_LATENCY``: the local fault proxy delays each AWS call,
the fal emulator each submit answer); a second run without them is reported beside it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.common import (
    LAYER_DIR,
    BenchError,
    child_environment,
    median,
    python_path,
    run_json_child,
)
from bench.stack_client import StackClient
from local.aws import ACCOUNT_ID, REGION, aws_environment
from local.lambda_runtime.sqs_poller import lambda_record
from local.stack import StackInfo
from local.template import REPO_ROOT
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.submit.uploads import uploads_from_message
from tests.support.pipeline import SAMPLE_IMAGE, Pipeline, eventbridge_body

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

FUNCTION = "SubmitFunction"
# Typical round trips from Lambda: DynamoDB and S3 in the same region, fal's queue API over the
# internet. Added to every call in the judged run.
NETWORK_LATENCY = {"dynamodb": 0.010, "s3": 0.025, "fal": 0.150}


@dataclass
class SubmitBatchResult:
    single_s: list[float] = field(default_factory=list)
    batch_s: list[float] = field(default_factory=list)
    single_cpu_s: list[float] = field(default_factory=list)
    batch_cpu_s: list[float] = field(default_factory=list)
    batch_size: int = 10
    network_latency: dict[str, float] = field(default_factory=dict)  # seconds added per call
    jobs_submitted: int = 0
    # "service.Operation" -> batch size ("1", "10") -> seconds of each outside call
    latencies: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return median(self.batch_s) / median(self.single_s)

    @property
    def per_record_s(self) -> float:
        return median(self.batch_s) / self.batch_size


def _records(pipeline: Pipeline, bucket: str, queue_arn: str, count: int) -> list[dict[str, Any]]:
    records = []
    size = SAMPLE_IMAGE.stat().st_size
    for _ in range(count):
        key = f"uploads/bench/{uuid.uuid4().hex[:12]}.jpg"
        version = pipeline.put_image(bucket, key, {"prompt": "A slow push-in over a harbour"})
        message: MessageTypeDef = {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": f"bench-{uuid.uuid4().hex}",
            "Body": eventbridge_body(bucket, key, version, size=size),
            "Attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": str(int(time.time() * 1000)),
                "SenderId": "AIDAEVENTBRIDGE",
                "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
            },
        }
        records.append(lambda_record(message, queue_arn))
    return records


def function_environment(info: StackInfo) -> dict[str, str]:
    """What LocalStack._start_function gives the submit process (see local/stack.py)."""
    spec = info.functions[FUNCTION]
    return child_environment(
        {
            **aws_environment(info.aws_fault_proxy),
            **spec["environment"],
            "AWS_LAMBDA_FUNCTION_NAME": spec["function_name"],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memory"]),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "FAL_QUEUE_RUN_HOST": info.fal_url.removeprefix("https://"),
            "SSL_CERT_FILE": info.fal_ca_file,
            "PYTHONPATH": python_path(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )


def measure(
    info: StackInfo, *, repeats: int, batch_size: int = 10, network_latency: bool = True
) -> SubmitBatchResult:
    stack = StackClient(info)
    latency = NETWORK_LATENCY if network_latency else {}
    try:
        for service in ("dynamodb", "s3"):
            if service in latency:
                stack.add_aws_latency(service, latency[service])
        fal_delay = {"submit_delay": {str(latency["fal"]): 1.0}} if "fal" in latency else {}
        stack.fal_faults(fast=True, processing_seconds=3600, rates=fal_delay)
        result = _measure(info, repeats=repeats, batch_size=batch_size)
    finally:
        stack.reset_aws_calls()  # and the latency rules
        stack.fal_faults(rates={})
    result.network_latency = dict(latency)
    return result


def _measure(info: StackInfo, *, repeats: int, batch_size: int) -> SubmitBatchResult:
    spec = info.functions[FUNCTION]
    pipeline = Pipeline(info)
    bucket = pipeline.own_bucket()
    queue_name = info.outputs["SubmitQueueUrl"].rsplit("/", 1)[1]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue_name}"
    # Warm-up: a full batch (the handler's worker threads and their per-thread DynamoDB
    # resources exist from then on, as in a container that has seen one) and a single record.
    batches = [
        {"warmup": True, "records": _records(pipeline, bucket, queue_arn, batch_size)},
        {"warmup": True, "records": _records(pipeline, bucket, queue_arn, 1)},
    ]
    for index in range(repeats):
        single = {"warmup": False, "records": _records(pipeline, bucket, queue_arn, 1)}
        full = {"warmup": False, "records": _records(pipeline, bucket, queue_arn, batch_size)}
        # Alternate which comes first, so drift hits both alike.
        batches += [single, full] if index % 2 == 0 else [full, single]
    child_spec = {
        "code_dir": str(REPO_ROOT / "functions" / "submit"),
        "layer_dir": str(LAYER_DIR),
        "handler": spec["handler"],
        "function_name": spec["function_name"],
        "memory": spec["memory"],
        "timeout": spec["timeout"],
        "batches": batches,
    }
    output = run_json_child(
        ["-m", "bench.submit_child"], env=function_environment(info), stdin=child_spec
    )
    if output["failures"]:
        raise BenchError(f"the submit handler reported {output['failures']} failed records")
    result = SubmitBatchResult(batch_size=batch_size, latencies=output.get("latencies", {}))
    for timing in output["timings"]:
        single = timing["records"] == 1
        (result.single_s if single else result.batch_s).append(float(timing["seconds"]))
        (result.single_cpu_s if single else result.batch_cpu_s).append(float(timing["cpu_seconds"]))
    job_ids = _job_ids(bucket, batches)
    statuses = [str((pipeline.job(job_id) or {}).get("status")) for job_id in job_ids]
    _release_slots(pipeline, job_ids)
    result.jobs_submitted = statuses.count("SUBMITTED")
    if result.jobs_submitted != len(statuses):
        raise BenchError(f"not every record was submitted: {sorted(set(statuses))}")
    return result


def _release_slots(pipeline: Pipeline, job_ids: list[str]) -> None:
    """Ends the measured jobs (their renders are held for an hour), so their fal slots are free
    for the next run: a slot is free once its holder's job is final (dispatch/slots.py)."""
    for job_id in job_ids:
        pipeline.table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET #s = :cancelled",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":cancelled": "CANCELLED"},
        )


def _job_ids(bucket: str, batches: list[dict[str, Any]]) -> list[str]:
    ids = []
    for batch in batches:
        for record in batch["records"]:
            (upload,) = uploads_from_message(record["body"])
            ids.append(job_id_for(bucket=bucket, key=upload.key, version=upload.version))
    return ids
