"""The dispatch gate's figures: how fast a drop larger than fal's capacity drains.

``python -m bench.dispatch_drain [--quick]`` prints three rows (to be added to ``make bench``'s
table by bench/report.py): the time to drain a drop of N against the physical minimum
``N x video time / FalConcurrency`` (target at most 1.10x), fal slot utilisation while work waits
(target at least 95%), and the median ``DispatchLatency`` (target at most 1 s locally).
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from local.stack import LocalStack, StackInfo
from local.template import REPO_ROOT

SAMPLE = (REPO_ROOT / "local" / "assets" / "sample.jpg").read_bytes()
FAL_CONCURRENCY = 2
PARAMETERS = {"FalConcurrency": str(FAL_CONCURRENCY), "FalQueueHeadroom": "1"}


@dataclass(frozen=True)
class DrainResult:
    uploads: int
    video_seconds: float
    drain_seconds: float
    utilisation: float | None  # share of samples, while jobs waited, with every fal slot running
    dispatch_latency_ms: float | None

    @property
    def minimum_seconds(self) -> float:
        return self.uploads * self.video_seconds / FAL_CONCURRENCY

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(figure, value, target, verdict)."""
        ratio = self.drain_seconds / self.minimum_seconds
        rows = [
            (
                f"drain a drop of {self.uploads}",
                f"{self.drain_seconds:.1f} s = {ratio:.2f}x the minimum "
                f"({self.minimum_seconds:.1f} s)",
                "<= 1.10x",
                "met" if ratio <= 1.10 else "NOT met",
            )
        ]
        if self.utilisation is None:
            rows.append(("fal slot utilisation while work waits", "not measured", ">= 95%", "-"))
        else:
            rows.append(
                (
                    "fal slot utilisation while work waits",
                    f"{self.utilisation:.0%}",
                    ">= 95%",
                    "met" if self.utilisation >= 0.95 else "NOT met",
                )
            )
        latency = self.dispatch_latency_ms
        rows.append(
            (
                "median DispatchLatency",
                "not measured" if latency is None else f"{latency:.0f} ms",
                "<= 1000 ms",
                "-" if latency is None else "met" if latency <= 1000 else "NOT met",
            )
        )
        return rows


def measure(*, uploads: int, video_seconds: float) -> DrainResult:
    with LocalStack(
        Path(tempfile.mkdtemp(prefix="pika-bench-drain-")), parameters=PARAMETERS
    ) as info:
        return _drain(info, uploads=uploads, video_seconds=video_seconds)


def _drain(info: StackInfo, *, uploads: int, video_seconds: float) -> DrainResult:
    tls = ssl.create_default_context(cafile=info.fal_ca_file)
    _emulator(info, tls, "/_emulator/account", {"concurrency": FAL_CONCURRENCY})
    _emulator(info, tls, "/_emulator/faults", {"processing_seconds": video_seconds})
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
    samples: list[bool] = []
    stop = threading.Event()

    def sample() -> None:
        # A slot is idle while work waits when fal runs fewer than its limit and jobs are QUEUED.
        while not stop.wait(0.2):
            state = _emulator(info, tls, "/_emulator/requests")
            if state["queued"] or _waiting(table):
                samples.append(state["running"] >= FAL_CONCURRENCY)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.monotonic()
    sampler.start()
    for index in range(uploads):
        s3.put_object(
            Bucket=bucket,
            Key=f"uploads/{folder}/{index:04d}.jpg",
            Body=SAMPLE,
            Metadata={"prompt": "drain", "duration": "1"},
        )
    while _open(table) and time.monotonic() - started < 60 + 4 * uploads * video_seconds:
        time.sleep(0.2)
    drain = time.monotonic() - started
    stop.set()
    sampler.join()
    return DrainResult(
        uploads=uploads,
        video_seconds=video_seconds,
        drain_seconds=drain,
        utilisation=sum(samples) / len(samples) if samples else None,
        dispatch_latency_ms=_median_metric(Path(info.state_dir) / "logs", "DispatchLatency"),
    )


def _waiting(table: Any) -> bool:
    return bool(
        table.query(
            IndexName="QueuedJobs",
            KeyConditionExpression="queue_lane = :l",
            ExpressionAttributeValues={":l": "normal"},
            Limit=1,
        )["Items"]
    )


def _open(table: Any) -> bool:
    items = table.scan(ProjectionExpression="#s", ExpressionAttributeNames={"#s": "status"})
    return not items["Items"] or any(
        item["status"] in ("QUEUED", "PENDING", "SUBMITTED") for item in items["Items"]
    )


def _median_metric(logs: Path, name: str) -> float | None:
    """The median of an EMF metric over every function's log (milliseconds as emitted)."""
    values: list[float] = []
    for log in logs.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("{") or f'"{name}"' not in line:
                continue
            try:
                value = json.loads(line).get(name)
            except json.JSONDecodeError:
                continue
            values.extend(value if isinstance(value, list) else [value])
    return statistics.median(values) if values else None


def _emulator(info: StackInfo, tls: ssl.SSLContext, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the local emulator
        f"{info.fal_url}{path}", data=data, method="GET" if body is None else "POST"
    )
    with urllib.request.urlopen(request, context=tls, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="12 uploads instead of 60")
    args = parser.parse_args()
    result = measure(uploads=12 if args.quick else 60, video_seconds=1.0)
    for figure, value, target, verdict in result.rows():
        print(f"{figure:<40}  {value:<45}  {target:<10}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
