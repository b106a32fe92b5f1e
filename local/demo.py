"""The whole pipeline on this machine, once: ``make demo IMAGE=photo.png PROMPT="..."``.

Starts the local stack, uploads the image with the prompt in its metadata (as any uploader
would), follows the job through its statuses, saves the finished MP4 and prints the job record.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import boto3

from local.aws import REGION, aws_environment
from local.stack import LocalStack, StackInfo
from local.template import REPO_ROOT
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.job import plain
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES
from pika_pipeline.submit.video_request import encode_metadata_value

DEFAULT_IMAGE = REPO_ROOT / "local" / "assets" / "sample.jpg"
TIMEOUT_SECONDS = 180


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--seed", default="")
    parser.add_argument("--resolution", default="")
    parser.add_argument("--duration", default="")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "videos")
    args = parser.parse_args(argv)
    if not args.image.is_file():
        print(f"error: no image at {args.image}", file=sys.stderr)
        return 2

    metadata = {
        name: encode_metadata_value(value)
        for name, value in {
            "prompt": args.prompt,
            "negative-prompt": args.negative_prompt,
            "seed": args.seed,
            "resolution": args.resolution,
            "duration": args.duration,
        }.items()
        if value
    }
    print("Starting the local stack (moto, fal emulator, Lambda runtime)...", flush=True)
    with LocalStack(REPO_ROOT / ".local-stack") as info:
        return run(info, args.image, metadata, args.out_dir)


def run(info: StackInfo, image: Path, metadata: dict[str, str], out_dir: Path) -> int:
    env = aws_environment(info.aws_endpoint)
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    s3 = session.client("s3", endpoint_url=info.aws_endpoint)
    table = session.resource("dynamodb", endpoint_url=info.aws_endpoint).Table(
        info.outputs["JobsTableName"]
    )
    bucket = info.outputs["InputBucketName"]
    key = f"uploads/{image.name}"
    version = s3.put_object(Bucket=bucket, Key=key, Body=image.read_bytes(), Metadata=metadata).get(
        "VersionId", ""
    )
    job_id = job_id_for(bucket=bucket, key=key, version=version)
    print(f"Uploaded s3://{bucket}/{key} (job {job_id})", flush=True)

    started = time.monotonic()
    status: str | None = None
    item: dict[str, Any] = {}
    while time.monotonic() - started < TIMEOUT_SECONDS:
        item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item") or {}
        if item.get("status") != status:
            status = str(item["status"]) if "status" in item else None
            print(f"  {time.monotonic() - started:6.1f}s  {status or 'waiting for the job'}")
        if status in TERMINAL_STATUSES:
            break
        time.sleep(0.5)

    record = json.dumps(plain(item), ensure_ascii=False, sort_keys=True)
    if status != "COMPLETED":
        print(f"The job did not complete (status {status}).", file=sys.stderr)
        print(f"Logs: {info.state_dir}/logs", file=sys.stderr)
        print(record)
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{image.stem}-{job_id[:8]}.mp4"
    s3.download_file(item["output_bucket"], item["output_key"], str(target))
    print(f"Video saved: {target}")
    print(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
