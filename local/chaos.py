"""A fault-injected load run: many uploads at once while fal, AWS and the submit function misbehave,
then proof that every upload ended exactly once. ``make chaos`` (1,000 uploads) or
``python -m local.chaos --uploads 100``.

Faults: fal answers 429 or 500 to 10% of submits and takes 1.5 s to answer 30% of them; 10% of
webhooks come twice (concurrently), 5% never, 5% late; 2% of results are errors; 4% of videos can
never be stored (2% not an MP4, 2% on a host missing from MediaHosts), and their jobs must end
FAILED with that code within the deadline, never stay open; 2% of S3 and
DynamoDB calls fail (before reaching moto); the submit function is killed (SIGKILL) a few times
mid-run, each time when a call to fal is in flight if one comes within 20 s (after the claim,
before fal's answer is recorded); 2% of uploads have no prompt. The reconciler runs every few
seconds, as its schedule would, compressed.

Then a second phase, a drop larger than fal's capacity: the emulator runs 2 requests at once like a
new fal account, the faults are on again (no kills), and the report shows the peak of requests
outstanding at fal against the cap the pipeline must keep (FalConcurrency + FalQueueHeadroom).
"""

from __future__ import annotations

import argparse
import json
import random
import ssl
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import boto3

from local.aws import REGION
from local.stack import SCHEDULED_EVENT, LocalStack, StackInfo
from local.template import REPO_ROOT
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES

SAMPLE = (REPO_ROOT / "local" / "assets" / "sample.jpg").read_bytes()
# Time compressed so a run takes minutes: retries after 1 s, claims and crashed batches back
# after seconds, the reconciler looking at jobs after 5 s.
PARAMETERS = {
    "SubmitRetryBaseSeconds": "1",
    "FalTimeoutSeconds": "2",
    "SubmitClaimSeconds": "8",
    "SubmitQueueVisibilitySeconds": "10",
    "ReconcileAfterSeconds": "5",
    "JobDeadlineSeconds": "600",
    "ReconcileBatchSize": "500",
    # fal's capacity as a new account has it (the template's defaults, stated so the over-capacity
    # phase's cap is this file's fact, whatever the defaults become).
    "FalConcurrency": "2",
    "FalQueueHeadroom": "1",
}
FAL_CAP = int(PARAMETERS["FalConcurrency"]) + int(PARAMETERS["FalQueueHeadroom"])
EMULATOR_CONCURRENCY = 2  # the emulator's account limit in the over-capacity phase
FAL_FAULTS = {
    "fast": True,
    "late_seconds": 3,
    "rates": {
        "submit": {"429": 0.05, "500": 0.05},
        # Slow answers keep submits in flight between claim and request id, where kills land.
        "submit_delay": {"1.5": 0.3},
        "delivery": {"duplicate": 0.10, "drop": 0.05, "late": 0.05},
        "outcome": {"error": 0.02},
        # Permanent failures: fetching these videos again can never help.
        "media": {"not_mp4": 0.02, "foreign_host": 0.02},
    },
}
# The code a job ends with when every fal request of it served its video this way.
PERMANENT_MEDIA = {"not_mp4": "video_not_mp4", "foreign_host": "video_host_not_allowed"}
AWS_FAULTS = [
    {"service": "s3", "operation": "*", "rate": 0.02, "status": 500},
    {"service": "dynamodb", "operation": "*", "rate": 0.02, "status": 500},
]
NO_PROMPT_SHARE = 0.02
SETTLE_SECONDS = 60
# What the submit path logs when a call to fal got no answer (its request may be queued all the
# same: one extra request each).
_SUBMIT_GAVE_UP_WAITING = (
    "fal unavailable; the message will be retried",
    "fal stayed unavailable; giving up",
)


@dataclass
class ChaosReport:
    rows: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def table(self) -> str:
        width = max(len(name) for name in self.rows)
        lines = [f"{'figure':<{width}}  value", f"{'-' * width}  -----"]
        lines += [f"{name:<{width}}  {value}" for name, value in self.rows.items()]
        lines += [f"problem: {problem}" for problem in self.problems] or ["no problems found"]
        return "\n".join(lines)


class _Run:
    def __init__(self, stack: LocalStack, info: StackInfo) -> None:
        self.stack = stack
        self.info = info
        session = boto3.session.Session(
            aws_access_key_id=info.environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=info.environment["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        self.s3 = session.client("s3", endpoint_url=info.aws_endpoint)
        self.sqs = session.client("sqs", endpoint_url=info.aws_endpoint)
        self.table = session.resource("dynamodb", endpoint_url=info.aws_endpoint).Table(
            info.outputs["JobsTableName"]
        )
        self.lambda_ = session.client(
            "lambda", endpoint_url=info.functions["ReconcilerFunction"]["invoke_url"]
        )
        self.tls = ssl.create_default_context(cafile=info.fal_ca_file)
        self.kills = 0
        self.kills_in_flight = 0
        # fal's answers held back (calls queued at fal, answer not yet sent) when each kill
        # came: each is a request whose id the killed process never learned.
        self.calls_in_flight_at_kills = 0
        self.reconciler_runs = 0

    def http(self, url: str, body: Any = None, context: ssl.SSLContext | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        method = "GET" if body is None else "POST"
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - local
        with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def upload(self, index: int, folder: str = "chaos") -> str:
        bucket = self.info.outputs["InputBucketName"]
        key = f"uploads/{folder}/{index:05d}.jpg"
        missing_prompt = random.random() < NO_PROMPT_SHARE
        metadata = {} if missing_prompt else {"prompt": f"chaos {index}", "duration": "1"}
        version = self.s3.put_object(Bucket=bucket, Key=key, Body=SAMPLE, Metadata=metadata)[
            "VersionId"
        ]
        return job_id_for(bucket=bucket, key=key, version=version)

    def jobs(self) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        arguments: dict[str, Any] = {"ConsistentRead": True}
        while True:
            page = self.table.scan(**arguments)
            items.update({str(item["job_id"]): item for item in page["Items"]})
            if "LastEvaluatedKey" not in page:
                return items
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def reconcile_on_schedule(self, stop: threading.Event) -> None:
        while not stop.wait(3):
            self.lambda_.invoke(
                FunctionName=self.info.functions["ReconcilerFunction"]["function_name"],
                Payload=SCHEDULED_EVENT.read_bytes(),
            )
            self.reconciler_runs += 1

    def kill_submit(self, times: int, stop: threading.Event) -> None:
        """Kills the submit function, waiting (up to 20 s) for a moment when a call to fal is in
        flight: after the job's claim, before fal's answer (its request id) is recorded."""
        for _ in range(times):
            if stop.wait(random.uniform(0.5, 2.0)):
                return
            waited_until = time.monotonic() + 20
            held = 0
            while not held and time.monotonic() < waited_until and not stop.is_set():
                state = self.http(f"{self.info.fal_url}/_emulator/requests", None, self.tls)
                held = int(state["answers_held"])
                if not held:
                    stop.wait(0.05)
            if stop.is_set():
                return
            self.stack.kill_and_restart("SubmitFunction")
            self.kills += 1
            self.kills_in_flight += bool(held)
            self.calls_in_flight_at_kills += held

    def queue_depth(self, output: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.info.outputs[output],
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


def run(
    *, uploads: int, kills: int, seed: int, timeout: float, over_capacity: int = 0
) -> ChaosReport:
    random.seed(seed)
    stack = LocalStack(
        Path(tempfile.mkdtemp(prefix="pika-chaos-")), parameters=PARAMETERS, run_schedules=False
    )
    info = stack.start()
    try:
        chaos = _Run(stack, info)
        report = _drive(chaos, uploads=uploads, kills=kills, timeout=timeout)
        if over_capacity:
            phase = _over_capacity(chaos, uploads=over_capacity, timeout=timeout)
            report.rows.update({f"over capacity: {k}": v for k, v in phase.rows.items()})
            report.problems.extend(f"over capacity: {problem}" for problem in phase.problems)
        return report
    finally:
        stack.stop()


def _over_capacity(run: _Run, *, uploads: int, timeout: float) -> ChaosReport:
    """A drop many times fal's capacity, with the faults on: every job still ends exactly once,
    and fal never holds more than the cap (the dispatch gate's promise)."""
    info = run.info
    # A clean account: the first phase's requests are checked already, and the peak counts anew.
    run.http(f"{info.fal_url}/_emulator/reset", {}, run.tls)
    run.http(f"{info.fal_url}/_emulator/account", {"concurrency": EMULATOR_CONCURRENCY}, run.tls)
    run.http(f"{info.fal_url}/_emulator/faults", FAL_FAULTS, run.tls)
    for rule in AWS_FAULTS:
        run.http(f"{info.aws_fault_proxy}/_faults", rule)
    run.calls_in_flight_at_kills = 0  # no kills in this phase
    stop = threading.Event()
    reconciler = threading.Thread(target=run.reconcile_on_schedule, args=(stop,), daemon=True)
    started = time.monotonic()
    reconciler.start()
    with ThreadPoolExecutor(max_workers=16) as pool:
        job_ids = list(pool.map(lambda index: run.upload(index, "chaos-drop"), range(uploads)))
    report = ChaosReport()
    deadline = started + timeout
    while time.monotonic() < deadline:
        jobs = run.jobs()
        if all(jobs.get(j, {}).get("status") in TERMINAL_STATUSES for j in job_ids):
            break
        time.sleep(1)
    wall = time.monotonic() - started
    stop.set()
    reconciler.join()
    peak = int(run.http(f"{info.fal_url}/_emulator/requests", None, run.tls)["peak_outstanding"])
    run.http(f"{info.aws_fault_proxy}/_faults/reset", {})
    run.http(f"{info.fal_url}/_emulator/faults", {"rates": {}}, run.tls)
    if not _settle(run, deadline=time.monotonic() + SETTLE_SECONDS):
        report.problems.append(f"not settled {SETTLE_SECONDS} s after the faults stopped")
    jobs = run.jobs()
    _check(run, report, job_ids, {j: jobs[j] for j in job_ids if j in jobs})
    report.rows.update(
        {
            "peak requests outstanding at fal": f"{peak} (cap {FAL_CAP})",
            "fal account concurrency (emulator)": EMULATOR_CONCURRENCY,
            "wall time (s)": f"{wall:.1f}",
        }
    )
    if peak > FAL_CAP:
        report.problems.append(f"{peak} requests outstanding at fal at once; the cap is {FAL_CAP}")
    return report


def _drive(run: _Run, *, uploads: int, kills: int, timeout: float) -> ChaosReport:
    info = run.info
    run.http(f"{info.fal_url}/_emulator/faults", FAL_FAULTS, run.tls)
    for rule in AWS_FAULTS:
        run.http(f"{info.aws_fault_proxy}/_faults", rule)
    stop = threading.Event()
    helpers = [
        threading.Thread(target=run.reconcile_on_schedule, args=(stop,), daemon=True),
        threading.Thread(target=run.kill_submit, args=(kills, stop), daemon=True),
    ]
    started = time.monotonic()
    for helper in helpers:
        helper.start()
    with ThreadPoolExecutor(max_workers=16) as pool:
        job_ids = list(pool.map(run.upload, range(uploads)))

    report = ChaosReport()
    deadline = started + timeout
    jobs = run.jobs()
    while time.monotonic() < deadline:
        jobs = run.jobs()
        if all(jobs.get(j, {}).get("status") in TERMINAL_STATUSES for j in job_ids):
            break
        time.sleep(1)
    wall = time.monotonic() - started
    stop.set()
    for helper in helpers:
        helper.join()
    # The faults stop; what is still in flight (late or duplicate deliveries, crashed batches
    # coming back) settles before the books are checked.
    run.http(f"{info.aws_fault_proxy}/_faults/reset", {})
    run.http(f"{info.fal_url}/_emulator/faults", {"rates": {}}, run.tls)
    if not all(jobs.get(j, {}).get("status") in TERMINAL_STATUSES for j in job_ids):
        report.problems.append(f"jobs still open when the run timed out after {timeout:.0f} s")
    if not _settle(run, deadline=time.monotonic() + SETTLE_SECONDS):
        report.problems.append(
            f"not settled {SETTLE_SECONDS} s after the faults stopped "
            "(fal deliveries pending or messages in the submit queue)"
        )
    _check(run, report, job_ids, run.jobs())
    report.rows.update({"wall time (s)": f"{wall:.1f}", "jobs per second": f"{uploads / wall:.1f}"})
    return report


def _settle(run: _Run, deadline: float) -> bool:
    """Waits for fal's pending work and the submit queue to drain; False if they never do."""
    while time.monotonic() < deadline:
        requests = run.http(f"{run.info.fal_url}/_emulator/requests", None, run.tls)["requests"]
        deliveries_done = all(
            r["status"] == "COMPLETED"
            and (r["delivery"] == "drop" or any(_ok(d["status"]) for d in r["deliveries"]))
            for r in requests
        )
        if deliveries_done and run.queue_depth("SubmitQueueUrl") == 0:
            return True
        time.sleep(1)
    return False


def _ok(status: Any) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def _check(run: _Run, report: ChaosReport, job_ids: list[str], jobs: dict[str, Any]) -> None:
    info = run.info
    problems = report.problems
    statuses = Counter(str(jobs.get(j, {}).get("status", "MISSING")) for j in job_ids)
    for job_id in job_ids:
        if jobs.get(job_id, {}).get("status") not in TERMINAL_STATUSES:
            problems.append(f"job {job_id} is {jobs.get(job_id, {}).get('status', 'missing')}")
    if len(jobs) != len(set(job_ids)):
        problems.append(f"{len(jobs)} jobs for {len(set(job_ids))} uploads")

    completed = [jobs[j] for j in job_ids if jobs.get(j, {}).get("status") == "COMPLETED"]
    for job in completed:
        listing = run.s3.list_objects_v2(
            Bucket=info.outputs["OutputBucketName"], Prefix=f"videos/{job['job_id']}"
        )
        if listing.get("KeyCount") != 1:
            problems.append(f"job {job['job_id']} has {listing.get('KeyCount')} video objects")
        elif not _decodes(run, job):
            problems.append(f"the video of job {job['job_id']} does not decode")

    requests = run.http(f"{info.fal_url}/_emulator/requests", None, run.tls)["requests"]
    by_job = Counter(_job_of(r["webhook_url"]) for r in requests)
    reached_fal = [j for j in job_ids if jobs.get(j, {}).get("request_ids")]
    extra = sum(by_job.values()) - len(reached_fal)
    unrecorded = [
        r
        for r in requests
        if r["request_id"]
        not in set(jobs.get(_job_of(r["webhook_url"]), {}).get("request_ids", ()))
    ]
    # A call whose answer was lost (killed, timed out) after fal queued it leaves a request only
    # its webhook can make known; when the fault also drops that webhook, nobody (fal's API
    # included) can name it. Any other unrecorded request is a paid result the pipeline lost.
    unknowable = [r for r in unrecorded if r["delivery"] == "drop"]
    unfinished = [r for r in requests if r["status"] in ("IN_QUEUE", "IN_PROGRESS")]
    if unfinished:
        problems.append(f"{len(unfinished)} fal requests still queued or running at the end")
    lost = [r for r in unrecorded if r["delivery"] != "drop"]
    problems.extend(
        f"fal request {r['request_id']} ({r['delivery']} delivery, answers "
        f"{[d['status'] for d in r['deliveries']]}) is not recorded on its job"
        for r in lost
    )
    refused = run.http(f"{info.fal_url}/_emulator/requests", None, run.tls)["rejected_submits"]
    _check_permanent_failures(report, jobs, requests, refused)
    multipart = run.s3.list_multipart_uploads(Bucket=info.outputs["OutputBucketName"]).get(
        "Uploads", []
    )
    if multipart:
        problems.append(f"{len(multipart)} multipart uploads left in progress")
    dead = run.queue_depth("SubmitDeadLetterQueueUrl")
    if run.queue_depth("SubmitQueueUrl"):
        problems.append("messages left in the submit queue")
    if dead:
        problems.append(f"{dead} messages in the dead-letter queue")
    undelivered = (
        run.queue_depth("UploadRuleDeadLetterQueueUrl")
        if "UploadRuleDeadLetterQueueUrl" in info.outputs
        else 0
    )
    if undelivered:
        problems.append(f"{undelivered} upload events in the upload rule's dead-letter queue")
    submit_timeouts = _submit_calls_unanswered(Path(info.state_dir) / "logs")
    metrics = _metrics(Path(info.state_dir) / "logs")
    failed = Counter(
        str(job.get("error_code")) for job in jobs.values() if job["status"] == "FAILED"
    )
    rejected = Counter(
        str(job.get("error_code")) for job in jobs.values() if job["status"] == "REJECTED"
    )
    report.rows.update(
        {
            "uploads": len(job_ids),
            "completed": statuses["COMPLETED"],
            "failed (by code)": dict(failed) or 0,
            "rejected (by code)": dict(rejected) or 0,
            "expired": statuses["EXPIRED"],
            "fal submissions accepted": sum(by_job.values()),
            "jobs that reached fal": len(reached_fal),
            "extra fal requests (ambiguous timeouts, crashes mid-call)": extra,
            "... explained by: fal calls in flight at kills": run.calls_in_flight_at_kills,
            "... explained by: submit calls fal did not answer in time": submit_timeouts,
            "fal requests the job never recorded": len(lost),
            "fal requests no one could know (answer lost, webhook dropped)": len(unknowable),
            "fal submits refused by injected faults": len(
                run.http(f"{info.fal_url}/_emulator/requests", None, run.tls)["rejected_submits"]
            ),
            "duplicate uploads suppressed": int(metrics["DuplicateUploads"]),
            "duplicate deliveries suppressed": int(metrics["DuplicateDeliveries"]),
            "webhooks rejected": int(metrics["WebhooksRejected"]),
            "jobs recovered by the reconciler": int(metrics["JobsRecovered"]),
            "reconciler runs": run.reconciler_runs,
            "submit function kills": run.kills,
            "... of them with a fal call in flight": run.kills_in_flight,
            "dead letters": dead,
            "undelivered upload events": undelivered,
        }
    )
    if extra > run.calls_in_flight_at_kills + submit_timeouts:
        problems.append(
            f"{extra} extra fal requests, more than the {run.calls_in_flight_at_kills} calls "
            f"in flight at kills and {submit_timeouts} unanswered submit calls explain"
        )


def _check_permanent_failures(
    report: ChaosReport,
    jobs: dict[str, Any],
    requests: list[dict[str, Any]],
    refused: list[dict[str, Any]],
) -> None:
    """A job whose every fal result is a video that can never be stored ends FAILED with that
    video's code, within the deadline (no retry loop keeps it open)."""
    by_job: dict[str, list[dict[str, Any]]] = {}
    for request in requests:
        by_job.setdefault(_job_of(request["webhook_url"]), []).append(request)
    deadline = int(PARAMETERS["JobDeadlineSeconds"])
    ended: Counter[str] = Counter()
    # A submit fal refused (an injected 422, say) ends its job with fal's code first.
    refused_jobs = {_job_of(r["webhook_url"]) for r in refused}
    for job_id, made in by_job.items():
        # Only jobs whose every request made a video, all unstorable the same way: a usable
        # video, or fal's own error, ends a job otherwise (checked elsewhere).
        if job_id in refused_jobs:
            continue
        codes = {PERMANENT_MEDIA.get(r["media"], "") if r["outcome"] == "ok" else "" for r in made}
        job = jobs.get(job_id)
        if job is None or len(codes) != 1 or "" in codes:
            continue
        (code,) = codes
        if (job["status"], job.get("error_code")) != ("FAILED", code):
            report.problems.append(
                f"job {job_id} got only videos that cannot be stored ({code}) but is "
                f"{job['status']} {job.get('error_code')}"
            )
            continue
        # From when its deadline started: a job whose call's answer was lost (a kill) is
        # finished straight from PENDING, never having a submitted_at.
        started = job.get("submitted_at") or job.get("created_at")
        took = _seconds_between(started, job.get("updated_at"))
        if took is None or took > deadline:
            report.problems.append(f"job {job_id} took {took} s to fail ({code}), past {deadline}")
        ended[code] += 1
    report.rows["jobs failed for good by unstorable videos (by code)"] = dict(ended) or 0


def _seconds_between(start: Any, end: Any) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()


def _job_of(webhook_url: str | None) -> str:
    return (webhook_url or "").split("job_id=", 1)[-1].split("&", 1)[0]


def _decodes(run: _Run, job: dict[str, Any]) -> bool:
    body = run.s3.get_object(Bucket=job["output_bucket"], Key=job["output_key"])["Body"]
    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        handle.write(body.read())
        handle.flush()
        try:
            with av.open(handle.name) as container:
                return sum(1 for _ in container.decode(video=0)) > 0
        except av.error.FFmpegError:
            return False


def _submit_calls_unanswered(logs: Path) -> int:
    """Submit calls to fal that timed out or broke off (by the submit path's log, wherever it ran:
    the submit function or the reconciler's re-submits)."""
    unanswered = 0
    for log in logs.glob("*Function.log"):
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("{") or "fal did not answer" not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            unanswered += record.get("message") in _SUBMIT_GAVE_UP_WAITING and str(
                record.get("reason", "")
            ).startswith("fal did not answer")
    return unanswered


def _metrics(logs: Path) -> Counter[str]:
    """Totals of the pipeline's EMF metrics (the undimensioned ones) across the function logs."""
    totals: Counter[str] = Counter()
    for log in logs.glob("*Function.log"):
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith('{"_aws"'):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line mangled by a process killed mid-write
            for directive in record["_aws"]["CloudWatchMetrics"]:
                if directive["Dimensions"] != [["service"]]:
                    continue
                for metric in directive["Metrics"]:
                    values = record.get(metric["Name"], [])
                    totals[metric["Name"]] += sum(values) if isinstance(values, list) else values
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--over-capacity",
        type=int,
        default=60,
        help="uploads of the second phase, a drop larger than fal's capacity (0: skip it)",
    )
    args = parser.parse_args()
    report = run(
        uploads=args.uploads,
        kills=args.kills,
        seed=args.seed,
        timeout=args.timeout,
        over_capacity=args.over_capacity,
    )
    print(report.table())
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
