"""The dispatch gate's figures: how fast a drop larger than fal's capacity drains, how busy fal's
slots stay while work waits, and how long a freed slot waits for its next job (DispatchLatency).

Its own local stack, with a new fal account's concurrency (2): N images are uploaded at once and
every job must end COMPLETED. The emulator records when each request took a runner and gave it
back; the job table records when each job was COMPLETED; the dispatchers' EMF lines carry
DispatchLatency. bench/report.py judges the three rows.
"""

from __future__ import annotations

import itertools
import json
import ssl
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from bench.common import BenchError
from local.stack import LocalStack, StackInfo
from local.template import REPO_ROOT

SAMPLE = (REPO_ROOT / "local" / "assets" / "sample.jpg").read_bytes()
FAL_CONCURRENCY, HEADROOM = 2, 1
PARAMETERS = {"FalConcurrency": str(FAL_CONCURRENCY), "FalQueueHeadroom": str(HEADROOM)}
OPEN = ("QUEUED", "PENDING", "SUBMITTED")
# The emulator's processing time per video: fal's minute scaled down 30x. The shorter it is, the
# more the pipeline's own turnaround weighs (fal finishing -> webhook recorded -> slot freed ->
# next submit, about 0.3-0.5 s here): one request of headroom keeps both slots busy only while
# that turnaround stays under video time / FalConcurrency, 1 s here against 30 s on fal.
VIDEO_SECONDS = 2.0


@dataclass(frozen=True)
class DrainResult:
    uploads: int
    concurrency: int
    video_seconds: float  # the mean time a request held an emulator runner
    drain_seconds: float  # the first upload stored -> the last job recorded COMPLETED
    utilisation: float  # busy slot-seconds / (concurrency x the time work waited), see busy_share
    waiting_seconds: float
    utilisation_from_upload: float  # the same counted from the first upload: the pipeline's
    # latency to fal's first start counted as idle slots too
    dispatch_latency_ms: list[float]  # every DispatchLatency a dispatcher emitted
    peak_outstanding: int  # the most requests queued or running at fal at once
    cap: int  # FalConcurrency + FalQueueHeadroom

    @property
    def minimum_seconds(self) -> float:
        """The physical minimum: every video on a busy slot, no slot ever idle."""
        return self.uploads * self.video_seconds / self.concurrency


def busy_share(
    uploaded: Sequence[float],
    runs: Sequence[tuple[float, float]],
    concurrency: int,
    *,
    from_upload: bool = False,
) -> tuple[float, float]:
    """(busy slot-seconds / (concurrency x waiting time), waiting time).

    Work waits while more images are uploaded than fal has started (in the pipeline's queue, on
    its way to fal, or in fal's queue), counted from fal's first start: before it, the first job
    is still travelling through the pipeline, which the drain time counts, not an idle slot
    (``from_upload`` counts it as idle slots too).
    """
    since = min(uploaded) if from_upload else min(start for start, _ in runs)
    times = [*uploaded, *(t for run in runs for t in run)]
    edges = sorted({since, *(t for t in times if t > since)})
    busy = waiting = 0.0
    for left, right in itertools.pairwise(edges):
        middle = (left + right) / 2
        if sum(t <= middle for t in uploaded) > sum(start <= middle for start, _ in runs):
            waiting += right - left
            running = sum(start <= middle < end for start, end in runs)
            busy += (right - left) * min(running, concurrency)
    if waiting <= 0:
        raise BenchError("no work waited: the drop was not larger than fal's capacity")
    return busy / (concurrency * waiting), waiting


def measure(*, uploads: int, video_seconds: float = VIDEO_SECONDS) -> DrainResult:
    with (
        tempfile.TemporaryDirectory(prefix="bench-drain-") as state,
        LocalStack(Path(state), PARAMETERS) as info,
    ):
        return _drain(info, uploads=uploads, video_seconds=video_seconds)


def _drain(info: StackInfo, *, uploads: int, video_seconds: float) -> DrainResult:
    tls = ssl.create_default_context(cafile=info.fal_ca_file)
    _emulator(info, tls, "/_emulator/account", {"concurrency": FAL_CONCURRENCY})
    # Tiny frames: the video time is the emulator's processing time, not this machine's encoder.
    _emulator(info, tls, "/_emulator/faults", {"processing_seconds": video_seconds, "fast": True})
    env = info.environment
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    s3 = session.client("s3", endpoint_url=info.aws_endpoint)
    table = session.resource("dynamodb", endpoint_url=info.aws_endpoint).Table(
        info.outputs["JobsTableName"]
    )
    bucket, folder = info.outputs["InputBucketName"], uuid.uuid4().hex[:8]
    uploaded: list[float] = []
    for index in range(uploads):
        s3.put_object(
            Bucket=bucket,
            Key=f"uploads/{folder}/{index:04d}.jpg",
            Body=SAMPLE,
            Metadata={"prompt": "drain", "duration": "1"},
        )
        uploaded.append(time.time())
    deadline = time.monotonic() + 60 + 4 * uploads * video_seconds
    while len(jobs := _jobs(table)) < uploads or any(j["status"] in OPEN for j in jobs):
        if time.monotonic() > deadline:
            raise BenchError(f"not drained in time: {_statuses(jobs)}")
        time.sleep(0.5)
    if any(j["status"] != "COMPLETED" for j in jobs):
        raise BenchError(f"every job must be COMPLETED: {_statuses(jobs)}")
    fal = _emulator(info, tls, "/_emulator/requests")
    runs = [(r["started_at"], r["finished_at"]) for r in fal["requests"] if r["started_at"]]
    if len(runs) != uploads or any(end is None for _, end in runs):
        raise BenchError(f"fal ran {len(runs)} requests for {uploads} uploads")
    utilisation, waiting = busy_share(uploaded, runs, FAL_CONCURRENCY)
    from_upload, _ = busy_share(uploaded, runs, FAL_CONCURRENCY, from_upload=True)
    latencies = _metric(Path(info.state_dir) / "logs", "DispatchLatency")
    if not latencies:
        raise BenchError("no DispatchLatency in the functions' logs")
    completed = max(datetime.fromisoformat(j["updated_at"]).timestamp() for j in jobs)
    return DrainResult(
        uploads=uploads,
        concurrency=FAL_CONCURRENCY,
        video_seconds=statistics.fmean(end - start for start, end in runs),
        drain_seconds=completed - uploaded[0],
        utilisation=utilisation,
        waiting_seconds=waiting,
        utilisation_from_upload=from_upload,
        dispatch_latency_ms=latencies,
        peak_outstanding=int(fal["peak_outstanding"]),
        cap=FAL_CONCURRENCY + HEADROOM,
    )


def _jobs(table: Any) -> list[dict[str, Any]]:
    names = {"#s": "status", "#u": "updated_at"}
    items = table.scan(ProjectionExpression="#s, #u", ExpressionAttributeNames=names)["Items"]
    return list(items)


def _statuses(jobs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{status} {n}" for status, n in Counter(j["status"] for j in jobs).items())


def _metric(logs: Path, name: str) -> list[float]:
    """Every value of an EMF metric in the functions' logs (several per line when one
    invocation dispatched several jobs)."""
    values: list[float] = []
    for log in sorted(logs.glob("*Function.log")):
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("{") or f'"{name}"' not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "_aws" in record and name in record:
                value = record[name]
                values.extend(map(float, value if isinstance(value, list) else [value]))
    return values


def _emulator(info: StackInfo, tls: ssl.SSLContext, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the local emulator
        f"{info.fal_url}{path}", data=data, method="GET" if body is None else "POST"
    )
    with urllib.request.urlopen(request, context=tls, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())
