"""Webhook copy: peak memory across video sizes, and throughput against boto3's upload_fileobj.

A moto server (``local.moto_server``, as the local stack runs it) stands in for S3 and
``bench.video_source`` for fal's media host. Each copy runs in a fresh ``bench.copy_child``
process, so the sizes cannot share a warmed-up heap. Objects are deleted after each copy so
moto does not hold them.

Memory: ``VideoStore.copy`` at every size; the baseline is the same process's RSS just before
the copy. Throughput: ``VideoStore.copy`` and ``upload_fileobj`` of the same bytes from the same
source, alternating, at one size (the largest that is at most ``--throughput-size``).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from bench.common import (
    LAYER_DIR,
    MIB,
    BenchError,
    child_environment,
    median,
    python_path,
    run_json_child,
)
from bench.video_source import VideoSource
from local.aws import CREDENTIALS, REGION, MotoServer, free_port
from local.template import REPO_ROOT

BUCKET = "bench-videos"
MODES = ("videostore", "upload_fileobj")


@dataclass
class CopySample:
    mode: str
    bytes: int
    seconds: float
    growth_mib: float
    ru_maxrss_growth_mib: float
    raw: dict[str, Any]

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6


@dataclass
class VideoCopyResult:
    sizes: list[int]
    throughput_size: int
    memory: dict[int, list[CopySample]] = field(default_factory=dict)
    throughput: dict[str, list[CopySample]] = field(default_factory=dict)

    def growth_mib(self, size: int) -> float:
        return median([s.growth_mib for s in self.memory[size]])

    def throughput_mb_s(self, mode: str) -> float:
        return median([s.mb_per_s for s in self.throughput[mode]])

    @property
    def throughput_ratio(self) -> float:
        return self.throughput_mb_s("videostore") / self.throughput_mb_s("upload_fileobj")


def parse_size(text: str) -> int:
    """``10MB`` (10**6), ``8MiB`` (2**20), ``1GB``, ``512KiB``, or a number of bytes."""
    units = {
        "kib": 1024,
        "mib": MIB,
        "gib": 1024 * MIB,
        "kb": 1000,
        "mb": 1000**2,
        "gb": 1000**3,
        "b": 1,
    }
    cleaned = text.strip().lower()
    for suffix, factor in units.items():
        if cleaned.endswith(suffix):
            return int(float(cleaned[: -len(suffix)]) * factor)
    return int(cleaned)


def format_size(size: int) -> str:
    for factor, unit in ((1000**3, "GB"), (1000**2, "MB"), (1024**3, "GiB"), (MIB, "MiB")):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size / 1000**2:.1f} MB"


class _Copier:
    def __init__(self, source: VideoSource, moto: MotoServer) -> None:
        self.source = source
        self.moto = moto
        self.env = child_environment(
            {
                "AWS_ENDPOINT_URL": moto.endpoint,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                **CREDENTIALS,
                "SSL_CERT_FILE": str(source.ca_file),
                "PYTHONPATH": python_path(LAYER_DIR, REPO_ROOT),
            }
        )
        self.s3 = boto3.client(
            "s3",
            endpoint_url=moto.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.s3.create_bucket(Bucket=BUCKET)

    def copy(self, mode: str, size: int) -> CopySample:
        key = f"videos/{mode}-{uuid.uuid4().hex[:8]}.mp4"
        raw = run_json_child(
            ["-m", "bench.copy_child", mode, self.source.url(size), str(size), BUCKET, key],
            env=self.env,
            timeout=1800,
        )
        self.s3.delete_object(Bucket=BUCKET, Key=key)
        before = int(raw["rss_before_kib"])
        return CopySample(
            mode=mode,
            bytes=size,
            seconds=float(raw["seconds"]),
            growth_mib=(int(raw["peak_rss_kib"]) - before) / 1024,
            ru_maxrss_growth_mib=(
                int(raw["ru_maxrss_after_kib"]) - int(raw["ru_maxrss_before_kib"])
            )
            / 1024,
            raw=raw,
        )


def measure(
    sizes: list[int],
    *,
    repeats: int,
    throughput_size: int,
    throughput_repeats: int,
    progress: Callable[[str], None] = lambda _: None,
) -> VideoCopyResult:
    eligible = [s for s in sizes if s <= throughput_size] or [min(sizes)]
    result = VideoCopyResult(sizes=sorted(sizes), throughput_size=max(eligible))
    with tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp:
        scratch = Path(tmp)
        moto = MotoServer(free_port(), scratch / "moto.log")
        moto.start()
        try:
            with VideoSource(scratch) as source:
                copier = _Copier(source, moto)
                for size in result.sizes:
                    started = time.monotonic()
                    result.memory[size] = [copier.copy("videostore", size) for _ in range(repeats)]
                    progress(
                        f"copy {format_size(size)}: {repeats} run(s) in "
                        f"{time.monotonic() - started:.0f} s"
                    )
                result.throughput = {mode: [] for mode in MODES}
                for index in range(throughput_repeats):
                    order = MODES if index % 2 == 0 else MODES[::-1]
                    for mode in order:
                        sample = copier.copy(mode, result.throughput_size)
                        result.throughput[mode].append(sample)
        finally:
            moto.stop()
    if not result.memory:
        raise BenchError("no copy was measured")
    return result
