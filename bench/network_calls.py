"""Network calls per job on the happy path, counted inside each function and at the wire.

Images are uploaded exactly as a user would (S3 -> EventBridge -> SQS -> submit -> fal ->
webhook). Each function counts the HTTP requests it sends from inside its own process, with its
clients' hooks (``bench/call_meter.py``: botocore's ``before-send`` event for AWS,
an httpx request hook for fal_client, a wrapper of urllib3's pool for the webhook's downloads):
those counts are the figures. The same calls are counted again at the wire, as a cross-check:
every AWS call goes through ``local/fault_proxy.py``, which counts them per
``service.Operation``, and every call to fal is a line in the fal emulator's log. At the wire, AWS
calls are split between the functions by the SDK app id each function process puts in its
User-Agent (the call meter sets it), since the submit function also dispatches after every
completion (the event's nudge). fal calls are split by time: the emulated fal account's
concurrency is set to 0, so every request waits in fal's queue; the emulator's log is marked
once every job is SUBMITTED (and no request has left the queue, checked before and after); the
account's concurrency is restored, and everything is read once every job is COMPLETED and its
webhook delivery answered.

Not counted, and reported separately: SQS calls (the Lambda poller's ReceiveMessage and
DeleteMessageBatch, not the function's), Secrets Manager (cached for 300 s, so once per secret
per container, seen on the warm-up job only), fal's JWKS (cached for 24 h) and the emulator's own
download of the image through the presigned URL (that GET is fal's, seen only at the wire
because the URL is presigned against the fault proxy: exactly one per request,
``Emulator._generate``).

Afterwards each job's genuine signed delivery is replayed once against the webhook's Function URL,
with the job put back to SUBMITTED, to time a warm webhook invocation for the cost figure; and
each scheduled function (the reconciler) is invoked a few times on the now idle stack, to count
and time what one run costs when no job needs it (a fixed cost, whatever the number of videos).
The stack is started with its schedules off, so none of that runs during the counting.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BenchError, median
from bench.stack_client import StackClient, wait_until
from bench.template_info import HANDLERS
from local.stack import StackInfo
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES
from tests.support.pipeline import Pipeline

# The design's minimum, call by call. Was 4 (claim, fal, request id, image GET): the dispatch gate
# (issue 16) inherently adds queueing the job, its fair-share rank, reading slots, their holders
# and the waiting job, the slot transaction, and the completion's nudge looking for the next job
# (layers/shared/pika_pipeline/dispatch/, dispatch-design.md).
SUBMIT_MINIMUM = (
    "s3 ranged GET of the image (metadata, size, signature)",
    "DynamoDB queue the job (conditional write, QUEUED)",
    "DynamoDB fair-share rank: the batch's counter (conditional update)",
    "DynamoDB fair-share rank: the lane's clock (read)",
    "DynamoDB slots, with the pause switch and the budget's limits (one BatchGetItem)",
    # Inherent: a slot is free when the job holding it has ended, which only the job table
    # knows (slots are derived, never released); one read per fill once any slot has a holder.
    "DynamoDB the slots' holders (one BatchGetItem of the jobs table)",
    "DynamoDB next waiting job (one Query of its lane)",
    "DynamoDB slot transaction (TransactWriteItems: slot + QUEUED -> PENDING)",
    "fal submit",
    "DynamoDB request id (conditional write)",
    # Inherent: the job's completion event nudges the submit function, which must look for a
    # waiting job to fill the slot it freed (work conservation): one read, nothing else when
    # nothing waits (the pause switch is not read then).
    "DynamoDB the completion's nudge: one read of the queue",
)
# Readable video keys (issue 18) cost nothing here: the one PUT writes the readable key with
# If-None-Match: *, and only a re-upload of a key (a refused PUT) takes the slower path.
WEBHOOK_MINIMUM = (
    "DynamoDB job read",
    "fal media GET of the video",
    "S3 PUT of the video at its readable key (If-None-Match: *; one part under 8 MiB)",
    "DynamoDB job update (conditional write)",
    "EventBridge completion event",
)
EXCLUDED_PREFIXES = ("sqs.", "secretsmanager.")
CACHED_FAL_CALLS = ("fal.GET jwks",)
PRESIGNED_IMAGE_GET = "fal.GET image (presigned S3 URL)"


@dataclass
class NetworkCallsResult:
    jobs: int
    submit: Counter[str]  # totals over all measured jobs, by operation, counted in the function
    webhook: Counter[str]
    excluded: Counter[str]
    warmup: Counter[str]  # every call of the first (cold) job, nothing excluded
    # The same, counted at the wire (fault proxy + fal emulator), to cross-check the hooks.
    wire_submit: Counter[str] = field(default_factory=Counter)
    wire_webhook: Counter[str] = field(default_factory=Counter)
    wire_excluded: Counter[str] = field(default_factory=Counter)
    webhook_ms: list[float] = field(default_factory=list)
    log_bytes_per_job: dict[str, float] = field(default_factory=dict)
    job_item: dict[str, Any] = field(default_factory=dict)
    image_bytes: int = 0
    # Scheduled functions (the reconciler), run on the idle stack: calls per run and durations.
    scheduled_calls: dict[str, Counter[str]] = field(default_factory=dict)
    scheduled_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def wire_agrees(self) -> bool:
        return self.submit == self.wire_submit and self.webhook == self.wire_webhook

    @property
    def webhook_median_ms(self) -> float:
        return median(self.webhook_ms)


def _split(calls: Counter[str]) -> tuple[Counter[str], Counter[str]]:
    """(counted, excluded) by the rules in the module docstring."""
    counted: Counter[str] = Counter()
    excluded: Counter[str] = Counter()
    for operation, number in calls.items():
        if operation.startswith(EXCLUDED_PREFIXES) or operation in CACHED_FAL_CALLS:
            excluded[operation] += number
        else:
            counted[operation] += number
    return counted, excluded


class _Measurement:
    def __init__(self, info: StackInfo, jobs: int) -> None:
        self.info = info
        self.jobs = jobs
        self.stack = StackClient(info)
        self.pipeline = Pipeline(info)
        self.logs = Path(info.state_dir) / "logs"
        self.log_bytes: dict[str, int] = {}
        self.window = (0.0, 0.0)  # epoch seconds the last measure() began and ended

    def _statuses(self, job_ids: list[str]) -> list[str]:
        return [str((self.pipeline.job(job_id) or {}).get("status", "")) for job_id in job_ids]

    def _queued(self, job_ids: list[str]) -> bool:
        requests = self.stack.fal_requests_for(set(job_ids))
        return len(requests) == len(job_ids) and all(
            r["status"] == "IN_QUEUE" for r in requests.values()
        )

    def _delivered(self, job_ids: list[str]) -> bool:
        requests = self.stack.fal_requests_for(set(job_ids))
        return len(requests) == len(job_ids) and all(
            any(isinstance(d["status"], int) and d["status"] < 300 for d in r["deliveries"])
            for r in requests.values()
        )

    def _upload(self, count: int) -> list[str]:
        return [
            self.pipeline.upload({"prompt": "A slow push-in over a quiet harbour"})
            for _ in range(count)
        ]

    def _finish(self, job_ids: list[str]) -> None:
        timeout = 60 + 5 * len(job_ids)
        wait_until(
            lambda: all(s in TERMINAL_STATUSES for s in self._statuses(job_ids)),
            timeout=timeout,
            what="the jobs to finish",
        )
        wrong = [s for s in self._statuses(job_ids) if s != "COMPLETED"]
        if wrong:
            raise BenchError(f"jobs ended {wrong}, not COMPLETED; see {self.logs}")
        wait_until(
            lambda: self._delivered(job_ids), timeout=30, what="the webhook deliveries to answer"
        )
        # Each completion nudges the submit function to dispatch: those calls are done once the
        # queue is empty, so the hooks and the wire count the same ones.
        self.pipeline.wait_for_queue_drained()

    def hooked_calls(self, since: float, until: float) -> tuple[Counter[str], Counter[str]]:
        """(submit, webhook): what each function counted from inside its process."""
        return (
            self.stack.function_calls(HANDLERS["submit"], since=since, until=until),
            self.stack.function_calls(HANDLERS["webhook"], since=since, until=until),
        )

    def warm_up(self) -> Counter[str]:
        """One job end to end, so caches (secrets, JWKS, clients) are what a warm one sees."""
        started = time.time()
        self._finish(self._upload(1))
        submit, webhook = self.hooked_calls(started, time.time())
        return submit + webhook

    def measure(self) -> tuple[Counter[str], Counter[str], list[str]]:
        self.window = (time.time(), 0.0)
        self.stack.reset_aws_calls()
        log_offset = self.stack.emulator_log_offset()
        function_logs = {p.stem: p.stat().st_size for p in self.logs.glob("*Function.log")}
        concurrency = self.stack.fal_concurrency()
        self.stack.set_fal_concurrency(0)  # fal starts nothing: the webhooks wait for the read
        try:
            job_ids = self._upload(self.jobs)
            wait_until(
                lambda: all(s not in ("", "QUEUED", "PENDING") for s in self._statuses(job_ids)),
                timeout=30 + 5 * self.jobs,
                what="every job to be SUBMITTED",
            )
            queued_before = self._queued(job_ids)
            queued_after = self._queued(job_ids)
            split_offset = self.stack.emulator_log_offset()
        finally:
            self.stack.set_fal_concurrency(concurrency)
        if not (queued_before and queued_after):
            raise BenchError("a request left fal's queue before the submit calls were counted")
        self._finish(job_ids)
        self.window = (self.window[0], time.time())
        # AWS calls by the function that made them (its SDK app id at the wire): the submit
        # function also dispatches after each completion (the event's nudge), after the split.
        by_app = self.stack.aws_calls_by_app()
        name = {f: self.info.functions[HANDLERS[f]]["function_name"] for f in HANDLERS}
        submit_calls = by_app.get(name["submit"], Counter()) + self.stack.emulator_calls(
            log_offset, split_offset
        )
        webhook_calls = by_app.get(name["webhook"], Counter()) + self.stack.emulator_calls(
            split_offset
        )
        # The emulator fetched each image through the presigned URL (no app id: not boto3).
        if by_app.get("", Counter())["s3.GetObject"] < self.jobs:
            raise BenchError(f"expected the emulator's {self.jobs} image GETs: {by_app}")
        webhook_calls[PRESIGNED_IMAGE_GET] += self.jobs
        self.log_bytes = {
            name: (self.logs / f"{name}.log").stat().st_size - size
            for name, size in function_logs.items()
        }
        return submit_calls, webhook_calls, job_ids

    def idle_runs(self, function: str, *, runs: int) -> tuple[Counter[str], list[float]]:
        """Invokes a scheduled function (after one warm-up run); its calls per run and times."""
        self._invoke(function)
        self.stack.reset_aws_calls()
        offset = self.stack.emulator_log_offset()
        durations = []
        for _ in range(runs):
            started = time.perf_counter()
            self._invoke(function)
            durations.append((time.perf_counter() - started) * 1000)
        calls = self.stack.aws_calls() + self.stack.emulator_calls(offset)
        calls = Counter({op: n / runs for op, n in calls.items() if not op.startswith("sqs.")})
        return calls, durations

    def _invoke(self, function: str) -> None:
        spec = self.info.functions[function]
        request = urllib.request.Request(  # noqa: S310 - the local Invoke API
            f"{spec['invoke_url']}/2015-03-31/functions/{spec['function_name']}/invocations",
            data=json.dumps(spec["schedule"]["event"]).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            if response.headers.get("X-Amz-Function-Error"):
                raise BenchError(f"{function} failed: {response.read()[:500]!r}")

    def replay_webhooks(self, job_ids: list[str]) -> list[float]:
        """A warm webhook invocation per job: its genuine signed delivery, the job reopened."""
        durations = []
        requests = self.stack.fal_requests_for(set(job_ids))
        for job_id in job_ids:
            delivery = requests[job_id]["deliveries"][0]
            self.pipeline.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET #s = :submitted",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":submitted": "SUBMITTED"},
            )
            headers = {
                k: v for k, v in delivery["headers"].items() if k.lower() != "content-length"
            }
            started = time.perf_counter()
            status, body = self.pipeline.post_webhook(
                delivery["url"], delivery["body"].encode("utf-8"), headers
            )
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200 or self._statuses([job_id]) != ["COMPLETED"]:
                raise BenchError(f"replayed delivery answered {status} {body}")
            durations.append(elapsed)
        return durations


def measure(info: StackInfo, *, jobs: int) -> NetworkCallsResult:
    run = _Measurement(info, jobs)
    run.stack.fal_faults(fast=True)
    warmup = run.warm_up()
    submit_calls, webhook_calls, job_ids = run.measure()
    wire_submit, wire_submit_excluded = _split(submit_calls)
    wire_webhook, wire_webhook_excluded = _split(webhook_calls)
    wire_excluded = wire_submit_excluded + wire_webhook_excluded
    wire_excluded[PRESIGNED_IMAGE_GET] = wire_webhook.pop(PRESIGNED_IMAGE_GET, 0)
    hooked_submit, hooked_webhook = run.hooked_calls(*run.window)
    submit_counted, submit_excluded = _split(hooked_submit)
    webhook_counted, webhook_excluded = _split(hooked_webhook)
    result = NetworkCallsResult(
        jobs=jobs,
        submit=+submit_counted,
        webhook=+webhook_counted,
        excluded=+(submit_excluded + webhook_excluded),
        warmup=+warmup,
        wire_submit=+wire_submit,
        wire_webhook=+wire_webhook,
        wire_excluded=+wire_excluded,
    )
    result.log_bytes_per_job = {k: v / jobs for k, v in run.log_bytes.items()}
    result.job_item = run.pipeline.job(job_ids[0]) or {}
    result.image_bytes = len(
        run.pipeline.s3.get_object(
            Bucket=str(result.job_item.get("source_bucket")),
            Key=str(result.job_item.get("source_key")),
        )["Body"].read()
    )
    result.webhook_ms = run.replay_webhooks(job_ids)
    for name in scheduled_functions(info):
        result.scheduled_calls[name], result.scheduled_ms[name] = run.idle_runs(name, runs=3)
    return result


def scheduled_functions(info: StackInfo) -> list[str]:
    return [name for name, spec in info.functions.items() if spec.get("schedule")]
