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

Then a second phase, a drop larger than fal's capacity: the emulator runs only FalConcurrency
requests at once, as a fal account does, each video takes seconds (so the drop arrives faster
than fal can run it), the faults are on again (no kills), and the report shows the peak of
requests outstanding at fal against the cap the pipeline must keep (FalConcurrency +
FalQueueHeadroom). A peak below FalConcurrency is a problem too: the drop never filled fal, so
the gate was not tested.

Money and news, both phases: the first starts with a daily budget of about 70% of its drop's price,
so dispatch stops part-way; the report shows spend against budget (never a cent over) and the jobs
left waiting QUEUED, then the run raises the budget the way an operator does (`pika-pipeline budget
set`) and they drain. Every finished job is announced by a signed webhook to NotifyUrl, a receiver
of the run's own that verifies with ``standardwebhooks`` and answers 5xx to 10% of deliveries: the
report counts webhooks delivered, duplicates and dead letters, and checks none is lost. (A run
across UTC midnight starts a new day's budget; the spend check reads today's.)

The checks and the report: local/chaos_checks.py.
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
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.config import Config

from local.aws import REGION, free_port
from local.chaos_checks import ChaosReport, Evidence, budget_ran_out, check, metric_totals
from local.stack import SCHEDULED_EVENT, LocalStack, StackInfo
from local.template import REPO_ROOT
from pika_pipeline.fal import pika
from pika_pipeline.fal.prices import usd_per_video
from pika_pipeline.jobs.event_outbox import EVENT_DUE, EVENT_SHARDS, EVENTS_DUE_INDEX
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES, JobStatus
from pika_pipeline_cli.resources import find_pipeline
from pika_pipeline_cli.spend import BudgetState, budget_state, set_budget
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

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
    # fal's capacity: an account of 8, so a drop of 1,000 drains in minutes through the gate
    # (at a new account's 2, the gate alone holds the first phase to about one job a second);
    # the over-capacity phase gives the emulator the same limit.
    "FalConcurrency": "8",
    "FalQueueHeadroom": "1",
    # The endpoint whose price the budget is set in (the template's default, stated here).
    "FalEndpoint": pika.ENDPOINT,
    # The notifier's retries after 1 and 2 s instead of minutes to hours (about 3 days in all):
    # 8 failed attempts in a row, 1e-8 at 10%, is what would dead-letter a notification.
    "NotifyRetryDelays": "1,2",
    "NotifyMaxAttempts": "8",
    # A job event the notifier has not taken 10 s after the job ended (a kill or a failed
    # PutEvents lost it) is published again by the reconciler, which runs every 3 s here.
    "EventGraceSeconds": "10",
}
PRICE = usd_per_video(PARAMETERS["FalEndpoint"])  # every chaos upload is fal's default video
BUDGET_SHARE = Decimal("0.7")  # of the first drop's price: dispatch stops part-way
RECEIVER_FAILURE_RATE = 0.10
FAL_CAP = int(PARAMETERS["FalConcurrency"]) + int(PARAMETERS["FalQueueHeadroom"])
EMULATOR_CONCURRENCY = int(PARAMETERS["FalConcurrency"])  # the emulated fal account's limit
# The over-capacity phase's video time: fal then runs 2 videos a second, fewer than the uploads
# reach the gate, so work waits in the pipeline and fal's slots stay full.
OVER_CAPACITY_VIDEO_SECONDS = 4.0
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
AWS_FAULTS = [
    {"service": "s3", "operation": "*", "rate": 0.02, "status": 500},
    {"service": "dynamodb", "operation": "*", "rate": 0.02, "status": 500},
]
NO_PROMPT_SHARE = 0.02
SETTLE_SECONDS = 60


class ChaosRun:
    def __init__(self, stack: LocalStack, info: StackInfo, receiver: WebhookReceiver) -> None:
        self.stack = stack
        self.info = info
        self.receiver = receiver
        # What an operator's CLI sees: the same control items `pika-pipeline budget` reads.
        self.operator = find_pipeline(
            stack=None, local_stack_file=Path(info.state_dir) / "stack.json"
        )
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
        # A run may take up to the reconciler's own timeout (300 s) on a loaded machine; one
        # invocation per call, as a schedule makes.
        self.lambda_ = session.client(
            "lambda",
            endpoint_url=info.functions["ReconcilerFunction"]["invoke_url"],
            config=Config(read_timeout=330, retries={"total_max_attempts": 1}),
        )
        self.tls = ssl.create_default_context(cafile=info.fal_ca_file)
        self.kills = 0
        self.kills_in_flight = 0
        # fal's answers held back (calls queued at fal, answer not yet sent) when each kill
        # came: each is a request whose id the killed process never learned.
        self.calls_in_flight_at_kills = 0
        self.reconciler_runs = 0
        self.metrics_reported: Counter[str] = Counter()  # what an earlier phase's report counted

    def next_phase(self) -> None:
        """Counts start again, so a phase's report holds its own kills, runs and metrics."""
        self.kills = self.kills_in_flight = self.calls_in_flight_at_kills = 0
        self.reconciler_runs = 0
        self.metrics_reported = metric_totals(Path(self.info.state_dir) / "logs")

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
            try:
                self.reconcile_once()
            except Exception as exc:  # a schedule keeps firing after a failed run
                print(f"chaos: a scheduled reconciler run failed: {exc!r}", flush=True)

    def reconcile_once(self) -> None:
        self.lambda_.invoke(
            FunctionName=self.info.functions["ReconcilerFunction"]["function_name"],
            Payload=SCHEDULED_EVENT.read_bytes(),
        )
        self.reconciler_runs += 1

    def events_owed(self) -> int:
        """Final jobs whose event the notifier has not acknowledged yet (the EventsDue index)."""
        owed = 0
        for shard in range(EVENT_SHARDS):
            arguments: dict[str, Any] = {
                "IndexName": EVENTS_DUE_INDEX,
                "KeyConditionExpression": Key(EVENT_DUE).eq(f"event-{shard}"),
                "Select": "COUNT",
            }
            while True:
                page = self.table.query(**arguments)
                owed += int(page["Count"])
                if "LastEvaluatedKey" not in page:
                    break
                arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return owed

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

    def budget_state(self) -> BudgetState:
        return budget_state(self.operator)

    def queue_depth(self, output: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.info.outputs[output],
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


def run(
    *, uploads: int, kills: int, seed: int, timeout: float, over_capacity: int = 0
) -> ChaosReport:
    random.seed(seed)
    # The receiver's URL is a stack parameter; its certificate and secret come with the stack.
    receiver_port = free_port()
    budget = (PRICE * uploads * BUDGET_SHARE).quantize(Decimal("0.01"))
    stack = LocalStack(
        Path(tempfile.mkdtemp(prefix="pika-chaos-")),
        parameters={
            **PARAMETERS,
            "DailyBudgetUSD": str(budget),
            "NotifyUrl": f"https://127.0.0.1:{receiver_port}/hooks/pika",
        },
        run_schedules=False,
    )
    info = stack.start()
    try:
        with webhook_receiver(
            _signing_secret(info),
            info.fal_ca_file,
            port=receiver_port,
            failure_rate=RECEIVER_FAILURE_RATE,
            seed=seed,
        ) as receiver:
            chaos = ChaosRun(stack, info, receiver)
            # Raised to what every job of the run could hold at once (one reservation each).
            raised = PRICE * (uploads + over_capacity)
            report = _drive(
                chaos, uploads=uploads, kills=kills, timeout=timeout, budget=(budget, raised)
            )
            if over_capacity and any("still open" in problem for problem in report.problems):
                # Its checks would count the first phase's leftovers as its own.
                report.problems.append("over capacity: skipped, the first phase did not finish")
            elif over_capacity:
                phase = _over_capacity(chaos, uploads=over_capacity, timeout=timeout)
                report.rows.update({f"over capacity: {k}": v for k, v in phase.rows.items()})
                report.problems.extend(f"over capacity: {problem}" for problem in phase.problems)
            return report
    finally:
        stack.stop()


def _signing_secret(info: StackInfo) -> str:
    """What an operator hands a receiver: "whsec_" + the notifier secret's current key."""
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=info.aws_endpoint,
        region_name=REGION,
        aws_access_key_id=info.environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=info.environment["AWS_SECRET_ACCESS_KEY"],
    )
    name = info.functions["NotifierFunction"]["environment"]["NOTIFY_SIGNING_SECRET"]
    value = json.loads(secrets.get_secret_value(SecretId=name)["SecretString"])
    return f"whsec_{value['current']}"


def _over_capacity(run: ChaosRun, *, uploads: int, timeout: float) -> ChaosReport:
    """A drop many times fal's capacity, with the faults on: every job still ends exactly once,
    and fal never holds more than the cap (the dispatch gate's promise)."""
    info = run.info
    # A clean account: the first phase's requests are checked already, and the peak counts anew.
    run.http(f"{info.fal_url}/_emulator/reset", {}, run.tls)
    run.http(f"{info.fal_url}/_emulator/account", {"concurrency": EMULATOR_CONCURRENCY}, run.tls)
    faults = {**FAL_FAULTS, "processing_seconds": OVER_CAPACITY_VIDEO_SECONDS}
    run.http(f"{info.fal_url}/_emulator/faults", faults, run.tls)
    for rule in AWS_FAULTS:
        run.http(f"{info.aws_fault_proxy}/_faults", rule)
    run.next_phase()  # no kills in this phase
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
    run.http(f"{info.fal_url}/_emulator/faults", {"rates": {}, "processing_seconds": 0}, run.tls)
    if not _settle(run, deadline=time.monotonic() + SETTLE_SECONDS):
        report.problems.append(f"not settled {SETTLE_SECONDS} s after the faults stopped")
    _check(run, report, job_ids)
    report.rows.update(
        {
            "peak requests outstanding at fal": f"{peak} (cap {FAL_CAP})",
            "fal account concurrency (emulator)": EMULATOR_CONCURRENCY,
            "wall time (s)": f"{wall:.1f}",
        }
    )
    if peak > FAL_CAP:
        report.problems.append(f"{peak} requests outstanding at fal at once; the cap is {FAL_CAP}")
    elif peak < EMULATOR_CONCURRENCY:
        report.problems.append(
            f"the drop never filled fal (peak {peak}, account {EMULATOR_CONCURRENCY}): "
            "the gate was not tested"
        )
    return report


def _drive(
    run: ChaosRun, *, uploads: int, kills: int, timeout: float, budget: tuple[Decimal, Decimal]
) -> ChaosReport:
    """``budget``: the daily budget the stack starts with, and what it is raised to once it
    has run out."""
    info = run.info
    # The account the stack's gate is sized for (the emulator starts as a new account, 2).
    run.http(f"{info.fal_url}/_emulator/account", {"concurrency": EMULATOR_CONCURRENCY}, run.tls)
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
    limit, raised = budget
    ran_out, peak_spend = False, Decimal(0)
    while time.monotonic() < deadline:
        jobs = run.jobs()
        open_jobs = [jobs.get(j, {}) for j in job_ids]
        open_jobs = [job for job in open_jobs if job.get("status") not in TERMINAL_STATUSES]
        if not open_jobs:
            break
        spent = run.budget_state().today.reserved_usd
        peak_spend = max(peak_spend, spent)
        # Ran out: nothing at fal or on its way there, and the rest cannot pay one more video.
        at_rest = all(job.get("status") == JobStatus.QUEUED for job in open_jobs)
        if not ran_out and at_rest and spent + PRICE > limit:
            ran_out = True
            fal = run.http(f"{info.fal_url}/_emulator/requests", None, run.tls)
            budget_ran_out(
                report,
                budget=limit,
                spent=spent,
                peak=peak_spend,
                price=PRICE,
                open_jobs=open_jobs,
                fal=fal,
            )
            set_budget(run.operator, daily=raised, monthly=None, by="local.chaos")
            report.rows["daily budget raised to (USD)"] = raised
            continue
        time.sleep(1)
    wall = time.monotonic() - started
    if not ran_out:
        report.problems.append(f"the daily budget of {limit} USD never stopped dispatch")
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
            "(fal deliveries pending, messages in the submit or notify queue)"
        )
    _check(run, report, job_ids)
    report.rows.update({"wall time (s)": f"{wall:.1f}", "jobs per second": f"{uploads / wall:.1f}"})
    return report


def _settle(run: ChaosRun, deadline: float) -> bool:
    """Waits for fal's pending work, the submit queue, the events owed (republished by the
    reconciler, which keeps running for them) and the notifications (retries included) to
    drain; False if they never do."""
    last_run = 0.0
    while time.monotonic() < deadline:
        requests = run.http(f"{run.info.fal_url}/_emulator/requests", None, run.tls)["requests"]
        deliveries_done = all(
            r["status"] == "COMPLETED"
            and (r["delivery"] == "drop" or any(_ok(d["status"]) for d in r["deliveries"]))
            for r in requests
        )
        owed = run.events_owed()
        if owed and time.monotonic() - last_run >= 3:  # the reconciler's period in this run
            run.reconcile_once()
            last_run = time.monotonic()
        queues = ("SubmitQueueUrl", "NotifyQueueUrl")
        if deliveries_done and not owed and not any(run.queue_depth(q) for q in queues):
            return True
        time.sleep(1)
    return False


def _ok(status: Any) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def _check(run: ChaosRun, report: ChaosReport, job_ids: list[str]) -> None:
    jobs = run.jobs()
    check(
        Evidence(
            run=run,
            job_ids=job_ids,
            jobs={j: jobs[j] for j in job_ids if j in jobs},
            fal=run.http(f"{run.info.fal_url}/_emulator/requests", None, run.tls),
            deadline_seconds=int(PARAMETERS["JobDeadlineSeconds"]),
        ),
        report,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds each phase may take (default: 900, or 2.5 s per upload if longer: the "
        "local moto answers a gate's index reads by walking the table, so a phase slows with "
        "its size, about half a job a second at 1,000 on 2 cores)",
    )
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
        timeout=args.timeout or max(900.0, 2.5 * args.uploads),
        over_capacity=args.over_capacity,
    )
    print(report.table())
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
