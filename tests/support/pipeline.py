"""What a test does with the running pipeline, through the same clients a user has."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from local.aws import ACCOUNT_ID, REGION, aws_environment
from local.stack import StackInfo
from local.template import REPO_ROOT
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.open_jobs import open_shard
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES

SAMPLE_IMAGE = REPO_ROOT / "local" / "assets" / "sample.jpg"


def eventbridge_body(bucket: str, key: str, version_id: str, size: int = 100171) -> str:
    """An S3 Object Created event as EventBridge delivers it to the queue."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": ACCOUNT_ID,
            "time": "2026-11-25T12:00:00Z",
            "region": REGION,
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {"key": key, "size": size, "version-id": version_id},
                "reason": "PutObject",
            },
        }
    )


OUTBOX_FIELDS = ("event_due", "event_due_at", "event_republished")


def without_outbox(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k not in OUTBOX_FIELDS}


def eventually[T](probe: Callable[[], T | None], timeout: float = 20) -> T:
    """The first value ``probe`` gives that is not None, asking again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


@dataclass(frozen=True)
class ClaimedUpload:
    bucket: str
    key: str
    version: str
    job_id: str


class Pipeline:
    def __init__(self, info: StackInfo) -> None:
        self.info = info
        env = aws_environment(info.aws_endpoint)
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        self.s3 = session.client("s3", endpoint_url=info.aws_endpoint)
        self.sqs = session.client("sqs", endpoint_url=info.aws_endpoint)
        self.secrets = session.client("secretsmanager", endpoint_url=info.aws_endpoint)
        self.table = session.resource("dynamodb", endpoint_url=info.aws_endpoint).Table(
            info.outputs["JobsTableName"]
        )
        self.input_bucket = info.outputs["InputBucketName"]
        self.output_bucket = info.outputs["OutputBucketName"]
        self._tls = ssl.create_default_context(cafile=info.fal_ca_file)

    # --- a user's actions -------------------------------------------------------------------

    def upload(
        self,
        metadata: dict[str, str],
        *,
        body: bytes | None = None,
        name: str | None = None,
        key: str | None = None,
    ) -> str:
        """Uploads an image under the input prefix; returns the job id the pipeline will use."""
        key = key or f"uploads/{uuid.uuid4().hex[:8]}/{name or 'photo.jpg'}"
        response = self.s3.put_object(
            Bucket=self.input_bucket,
            Key=key,
            Body=SAMPLE_IMAGE.read_bytes() if body is None else body,
            Metadata=metadata,
        )
        return job_id_for(bucket=self.input_bucket, key=key, version=response["VersionId"])

    def job(self, job_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def job_state(self, job_id: str) -> dict[str, Any] | None:
        """The job without the outbox's bookkeeping, which the notifier clears on its own
        schedule: what "this job did not change" compares."""
        job = self.job(job_id)
        return without_outbox(job) if job else None

    def claimed_upload(
        self, key: str, metadata: dict[str, str], *, expires_in: int, versioned: bool = True
    ) -> ClaimedUpload:
        """An image in a bucket of its own whose job the submit path has claimed but not yet
        submitted (``leave_claim``); no event is sent, so only what the test does next runs.

        In a bucket without versioning the upload's identity is what its event carried (the
        ETag here) and the job records no S3 version id, as the submit path does."""
        bucket = self.own_bucket(versioned=versioned)
        version = self.put_image(bucket, key, metadata)
        job_id = job_id_for(bucket=bucket, key=key, version=version)
        source = {"source_bucket": bucket, "source_key": key, "source_version": version}
        if versioned:
            source["source_version_id"] = version
        self.leave_claim(job_id, source, expires_in=expires_in)
        return ClaimedUpload(bucket=bucket, key=key, version=version, job_id=job_id)

    def leave_claim(self, job_id: str, source: dict[str, str], *, expires_in: int) -> None:
        """A job as the submit path claims it before calling fal: PENDING, no request id, the
        claim running out in ``expires_in`` seconds (negative: its submit crashed), and due in
        the reconciler's index."""
        now = int(time.time())
        self.table.put_item(
            Item={
                "job_id": job_id,
                "status": "PENDING",
                **source,
                "claim_expires_at": now + expires_in,
                "open_shard": open_shard(job_id),
                "next_check_at": now - 1,
            }
        )

    def wait_for_job(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        """The job once it reaches a terminal status."""
        deadline = time.monotonic() + timeout
        item = None
        while time.monotonic() < deadline:
            item = self.job(job_id)
            if item and item["status"] in TERMINAL_STATUSES:
                return item
            time.sleep(0.25)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s; last seen: {item}")

    def wait_for_status(self, job_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
        """The job once it is in ``status`` (a status it passes through, such as SUBMITTED)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self.job(job_id)
            if item and item["status"] == status:
                return item
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} never reached {status}")

    def download(self, bucket: str, key: str, target: Path) -> Path:
        self.s3.download_file(bucket, key, str(target))
        return target

    def video_objects(self, job_id: str) -> list[str]:
        """The objects of the output bucket that say they are this job's video (``job-id``
        metadata): in its staging folder ``videos/<job id>/``, or beside its upload's readable
        key (the default VideoKeyTemplate mirrors the upload's folder under ``videos/``)."""
        job = self.job(job_id) or {}
        relative = str(job.get("source_key", "")).removeprefix(self.info.outputs["InputPrefix"])
        folder = relative.rpartition("/")[0]
        keys: list[str] = []
        for prefix in {f"videos/{job_id}/", f"videos/{folder}/" if folder else "videos/"}:
            listed = self.s3.list_objects_v2(
                Bucket=self.output_bucket, Prefix=prefix, Delimiter="/"
            )
            for entry in listed.get("Contents", []):
                head = self.s3.head_object(Bucket=self.output_bucket, Key=entry["Key"])
                if head["Metadata"].get("job-id") == job_id:
                    keys.append(entry["Key"])
        return sorted(keys)

    def send_raw_message(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.info.outputs["SubmitQueueUrl"], MessageBody=body)

    def send_batch(self, bodies: list[str]) -> None:
        """Messages sent together, so the function receives them in one batch."""
        self.sqs.send_message_batch(
            QueueUrl=self.info.outputs["SubmitQueueUrl"],
            Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)],
        )

    def wait_for_queue_drained(self, timeout: float = 30) -> None:
        """Returns once the submit queue holds no message at all, visible, in flight or delayed:
        every message sent so far was processed and deleted, so none can come back."""
        url = self.info.outputs["SubmitQueueUrl"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )
            if not any(int(n) for n in counts["Attributes"].values()):
                return
            time.sleep(0.2)
        raise AssertionError(f"the submit queue still held messages after {timeout} s")

    def own_bucket(self, *, versioned: bool = True) -> str:
        """A bucket no rule watches (versioned unless asked otherwise): only the messages a test
        sends start jobs."""
        name = f"customer-uploads-{uuid.uuid4().hex[:8]}"
        self.s3.create_bucket(Bucket=name)
        if versioned:
            self.s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )
        return name

    def put_image(self, bucket: str, key: str, metadata: dict[str, str]) -> str:
        """Puts the sample image; returns its version id, or in a bucket without versioning its
        ETag (what the upload's event names it by)."""
        response = self.s3.put_object(
            Bucket=bucket, Key=key, Body=SAMPLE_IMAGE.read_bytes(), Metadata=metadata
        )
        version: str = response.get("VersionId") or response["ETag"].strip('"')
        return version

    def wait_for_dead_letter(self, marker: str, timeout: float = 45, *, take: bool = True) -> str:
        """The dead-lettered message whose body contains ``marker``: removed from the DLQ, or with
        ``take=False`` only looked at (visible again at once, for a re-drive to find)."""
        url = self.info.outputs["SubmitDeadLetterQueueUrl"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=1 if take else 0,
            ).get("Messages", []):
                if marker in message["Body"]:
                    if take:
                        self.sqs.delete_message(
                            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                        )
                    body: str = message["Body"]
                    return body
        raise AssertionError(f"no message with {marker!r} reached the dead-letter queue")

    def dead_lettered(self, marker: str, *, take: bool = True) -> bool:
        """Whether a message containing ``marker`` is in the dead-letter queue."""
        try:
            self.wait_for_dead_letter(marker, timeout=2, take=take)
        except AssertionError:
            return False
        return True

    # --- what integrations downstream see ---------------------------------------------------

    def subscribe(self) -> str:
        """A queue subscribed to the pipeline's completion events, as an integration would."""
        name = f"integration-{uuid.uuid4().hex[:8]}"
        events = boto3.client(
            "events",
            endpoint_url=self.info.aws_endpoint,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        url: str = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        bus = self.info.outputs["CompletionEventBus"]  # where the stack says its events go
        events.put_rule(
            Name=name, EventBusName=bus, EventPattern=json.dumps({"source": ["pika-pipeline"]})
        )
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "integration", "Arn": arn}])
        return url

    def events_for(self, queue_url: str, job_id: str, timeout: float = 15) -> list[dict[str, Any]]:
        """The completion events about one job that reached the subscribed queue."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not found:
            for message in self.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", []):
                event = json.loads(message["Body"])
                # A batch's summary (Batch Completed) is about no one job.
                if event["detail"].get("job_id") == job_id:
                    found.append(event)
        return found

    # --- what the functions wrote to their logs (an operator's CloudWatch Logs) ---------------

    def log_mark(self, function: str) -> int:
        """Where the function's log ends now; pass it as ``since`` to read only what follows."""
        path = self._log_path(function)
        return path.stat().st_size if path.exists() else 0

    def log_entries(self, function: str, *, since: int = 0) -> list[dict[str, Any]]:
        """The function's structured log lines (Powertools Logger), oldest first."""
        return [entry for entry in self._log_records(function, since) if "level" in entry]

    def wait_for_log(
        self, function: str, message: str, *, since: int, count: int = 1, **keys: str
    ) -> list[dict[str, Any]]:
        """The function's log entries with ``message`` (and these keys) written after ``since``,
        once there are ``count`` of them: proof the function has processed that many events."""
        deadline = time.monotonic() + 30
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [
                entry
                for entry in self.log_entries(function, since=since)
                if entry["message"] == message and all(entry.get(k) == v for k, v in keys.items())
            ]
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise AssertionError(f"{function} logged {message!r} {len(found)} times, not {count}")

    def wait_for_duplicates(self, job_id: str, *, since: int, count: int = 1) -> None:
        """Returns once the submit function has turned away ``count`` events for a job that
        already had one (after the log mark ``since``): they were processed, not just late."""
        message = "Upload already has a job; not queueing it again"
        self.wait_for_log("SubmitFunction", message, since=since, count=count, job_id=job_id)

    def metric_entries(self, function: str, *, since: int = 0) -> list[dict[str, Any]]:
        """The function's EMF lines (Powertools Metrics), oldest first."""
        return [entry for entry in self._log_records(function, since) if "_aws" in entry]

    def metric_total(self, function: str, name: str, **dimensions: str) -> float:
        """The sum of a metric the function has written (EMF lines), for these dimensions."""
        total = 0.0
        for entry in self.metric_entries(function):
            if name in entry and all(entry.get(k) == v for k, v in dimensions.items()):
                total += sum(entry[name]) if isinstance(entry[name], list) else entry[name]
        return total

    def submit_log_messages_for(self, job_id: str) -> list[str]:
        """What the submit function logged about one job, warnings and errors only (retries
        too)."""
        return [
            entry["message"]
            for entry in self.log_entries("SubmitFunction")
            if entry.get("job_id") == job_id
            and (entry["level"] != "INFO" or entry["message"] == "Retrying the message later")
        ]

    def _log_path(self, function: str) -> Path:
        return Path(self.info.state_dir, "logs", f"{function}.log")

    def _log_records(self, function: str, since: int) -> list[dict[str, Any]]:
        path = self._log_path(function)
        if not path.exists():
            return []
        with path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        records = []
        for line in text.splitlines():
            if not line.startswith("{"):
                continue  # the runtime's own lines, a traceback
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written right now
            if isinstance(record, dict):
                records.append(record)
        return records

    # --- the reconciler, run now instead of on its schedule ----------------------------------

    def reconcile(self) -> dict[str, int]:
        """Runs the reconciler once through Lambda's Invoke API; returns its report."""
        spec = self.info.functions["ReconcilerFunction"]
        client = boto3.client(
            "lambda",
            endpoint_url=spec["invoke_url"],
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        response = client.invoke(
            FunctionName=spec["function_name"],
            Payload=(REPO_ROOT / "events" / "reconciler-schedule.json").read_bytes(),
        )
        assert "FunctionError" not in response, response["Payload"].read()
        report: dict[str, int] = json.loads(response["Payload"].read())
        return report

    def reconcile_until_final(self, job_id: str, runs: int = 10) -> dict[str, Any]:
        """Runs the reconciler until the job is final (earlier tests may leave jobs due too)."""
        for _ in range(runs):
            self.reconcile()
            job = self.job(job_id)
            if job and job["status"] in TERMINAL_STATUSES:
                return job
            time.sleep(1)
        raise AssertionError(f"job {job_id} still open after {runs} reconciler runs")

    # --- faults in AWS, as the functions see it ----------------------------------------------

    def aws_faults(self, **rule: Any) -> None:
        request = urllib.request.Request(  # noqa: S310 - the local fault proxy
            f"{self.info.aws_fault_proxy}/_faults", data=json.dumps(rule).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def aws_faults_reset(self) -> None:
        """Forgets every rule, and zeroes the call counts."""
        request = urllib.request.Request(  # noqa: S310 - the local fault proxy
            f"{self.info.aws_fault_proxy}/_faults/reset", data=b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def aws_fault_rules(self) -> list[dict[str, Any]]:
        """The armed rules, each with how often it has fired."""
        request = urllib.request.Request(f"{self.info.aws_fault_proxy}/_faults")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            rules: list[dict[str, Any]] = json.loads(response.read())
            return rules

    def multipart_uploads_in_progress(self) -> list[str]:
        uploads = self.s3.list_multipart_uploads(Bucket=self.output_bucket).get("Uploads", [])
        return [upload["Key"] for upload in uploads]

    # --- the fal emulator's view --------------------------------------------------------------

    def fal_account(self, *, concurrency: int) -> None:
        """Sets the emulated fal account's concurrency limit (it outlives a faults reset)."""
        self._emulator("POST", "/_emulator/account", {"concurrency": concurrency})

    def fal_emulator_state(self) -> dict[str, Any]:
        """The emulator's account: concurrency, queued and running requests, and the peak."""
        return self._emulator("GET", "/_emulator/requests")

    def fal_requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = self._emulator("GET", "/_emulator/requests")["requests"]
        return requests

    def fal_requests_for(self, job_id: str) -> list[dict[str, Any]]:
        return [r for r in self.fal_requests() if f"job_id={job_id}" in (r["webhook_url"] or "")]

    def refused_fal_submits_for(self, job_id: str) -> list[dict[str, Any]]:
        """The submits fal's emulator answered with an injected error, for one job."""
        refused: list[dict[str, Any]] = self._emulator("GET", "/_emulator/requests")[
            "rejected_submits"
        ]
        return [r for r in refused if f"job_id={job_id}" in (r["webhook_url"] or "")]

    def fal_submits_for(self, job_id: str) -> list[dict[str, Any]]:
        """Every submit fal's emulator saw for the job, accepted or refused by an injected fault."""
        seen = self._emulator("GET", "/_emulator/requests")
        return [
            submit
            for submit in [*seen["requests"], *seen["rejected_submits"]]
            if f"job_id={job_id}" in (submit["webhook_url"] or "")
        ]

    def delivered(self, job_id: str) -> dict[str, Any]:
        """The first webhook delivery fal made for the job: url, signed headers and body."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (request,) = self.fal_requests_for(job_id)
            if request["deliveries"]:  # recorded once the webhook has answered
                delivery: dict[str, Any] = request["deliveries"][0]
                return delivery
            time.sleep(0.1)
        raise AssertionError(f"fal made no delivery for job {job_id}")

    def fal_reset(self) -> None:
        """Forgets the emulator's requests and faults, and restarts its peak from now."""
        self._emulator("POST", "/_emulator/reset")

    def answered_deliveries(self, job_id: str, count: int) -> list[dict[str, Any]]:
        """fal's webhook deliveries for the job's one request, once ``count`` were answered."""
        deliveries: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            (request,) = self.fal_requests_for(job_id)
            deliveries = request["deliveries"]  # each recorded once the webhook has answered
            if len(deliveries) >= count:
                return deliveries
            time.sleep(0.2)
        raise AssertionError(f"{len(deliveries)} deliveries answered for {job_id}, not {count}")

    def fal_faults(self, **faults: Any) -> None:
        self._emulator("POST", "/_emulator/faults", faults)

    def fal_signature(self, request_id: str, body: bytes) -> dict[str, str]:
        """The headers fal would sign ``body`` with, as the request ``request_id``'s delivery."""
        request = urllib.request.Request(  # noqa: S310 - the local emulator
            f"{self.info.fal_url}/_emulator/sign?request_id={request_id}", data=body, method="POST"
        )
        with urllib.request.urlopen(request, context=self._tls, timeout=10) as response:  # noqa: S310
            headers: dict[str, str] = json.loads(response.read())
            return headers

    def token_key(self) -> str:
        """The stack's webhook token secret (what only the stack and its functions know)."""
        name = self.info.functions["WebhookFunction"]["environment"]["WEBHOOK_TOKEN_SECRET"]
        return str(self.secrets.get_secret_value(SecretId=name)["SecretString"]).strip()

    def _emulator(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the local emulator
            f"{self.info.fal_url}{path}", data=data, method=method
        )
        with urllib.request.urlopen(request, context=self._tls, timeout=10) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read())
            return result

    # --- the webhook, as anyone on the internet can reach it ---------------------------------

    def post_webhook(
        self, url: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POSTs to the webhook's Function URL as anyone on the internet could."""
        assert url.startswith(self.info.webhook_url)
        request = urllib.request.Request(  # noqa: S310 - the local Function URL
            url,
            data=body,
            headers={"Content-Type": "application/json", **(headers or {})},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
