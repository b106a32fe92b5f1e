"""The ``pika-pipeline`` command: upload images, follow jobs, fetch videos, retry, re-drive."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from pika_pipeline.aws.errors import error_code
from pika_pipeline.fal import pika
from pika_pipeline.fal.prices import usd_per_video
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.job import plain
from pika_pipeline.jobs.statuses import TERMINAL_STATUSES, JobStatus
from pika_pipeline.submit.video_request import encode_metadata_value
from pika_pipeline_cli.resources import CliError, Pipeline, find_pipeline

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
METADATA_LIMIT_BYTES = 2048  # S3's limit on user metadata, keys and values together
# What a retry costs: the endpoint the pipeline is built for (FAL_ENDPOINT is not a parameter).
PRICE_PER_VIDEO = f"${usd_per_video(pika.ENDPOINT):.2f}"
OTHER_BUCKET_PREFIX = "uploads/"  # --bucket without --prefix
JOB_ID = re.compile(r"[0-9a-f]{32}")
# fal could not make the video, or never finished it: another upload may well succeed. The others
# are final for a reason (a video exists, the upload is unusable) or still on their way.
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.EXPIRED})


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        pipeline = find_pipeline(stack=args.stack, local_stack_file=args.local_stack)
        result: int = args.run(pipeline, args)
        return result
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except NoCredentialsError:
        print("error: no AWS credentials found; configure them (aws configure)", file=sys.stderr)
    except EndpointConnectionError as exc:
        print(f"error: cannot reach {exc.kwargs.get('endpoint_url')}", file=sys.stderr)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message")
        print(f"error: AWS said {error_code(exc)}: {message}", file=sys.stderr)
    except BotoCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:  # an unreadable image, a download folder that cannot be written
        print(f"error: {_describe(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pika-pipeline", description=__doc__)
    where = parser.add_argument_group("which pipeline (default: the running local stack)")
    where.add_argument("--stack", help="a deployed stack's name")
    where.add_argument("--local-stack", type=Path, help="a local stack's stack.json")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    upload = commands.add_parser("upload", help="upload images with their prompt")
    upload.add_argument("images", nargs="+", type=Path, help="image files or folders")
    upload.add_argument("--prompt", required=True)
    upload.add_argument("--negative-prompt")
    upload.add_argument("--seed", type=int)
    upload.add_argument("--resolution", choices=pika.RESOLUTIONS)
    upload.add_argument("--duration", type=int)
    upload.add_argument("--bucket", help="upload here instead of the stack's input bucket")
    upload.add_argument(
        "--prefix",
        help=f"the key prefix (the stack's input prefix; {OTHER_BUCKET_PREFIX} with --bucket)",
    )
    upload.set_defaults(run=_upload)

    status = commands.add_parser("status", help="a job's record")
    status.add_argument("job", metavar="KEY|JOB_ID")
    status.set_defaults(run=_status)

    wait = commands.add_parser("wait", help="follow a job until it finishes")
    wait.add_argument("job", metavar="KEY|JOB_ID")
    wait.add_argument("--timeout", type=float, default=900, help="seconds (900)")
    wait.set_defaults(run=_wait)

    jobs = commands.add_parser("jobs", help="a table of jobs")
    jobs.add_argument("--status", choices=[s.value for s in JobStatus])
    jobs.add_argument("--since", help="an ISO date/time, or a duration such as 2h or 3d")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.set_defaults(run=_jobs)

    download = commands.add_parser("download", help="save a finished video")
    download.add_argument("job", metavar="KEY|JOB_ID")
    download.add_argument("dir", nargs="?", type=Path, default=Path())
    download.set_defaults(run=_download)

    retry = commands.add_parser(
        "retry", help=f"submit a failed or expired job again ({PRICE_PER_VIDEO})"
    )
    retry.add_argument("job", metavar="KEY|JOB_ID")
    retry.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    retry.set_defaults(run=_retry)

    redrive = commands.add_parser(
        "redrive", help="move dead-lettered upload events and undelivered webhooks back"
    )
    redrive.set_defaults(run=_redrive)
    return parser


# --- upload -----------------------------------------------------------------------------------


def _upload(pipeline: Pipeline, args: argparse.Namespace) -> int:
    images = list(_images(args.images))
    metadata = upload_metadata(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        resolution=args.resolution,
        duration=args.duration,
    )
    bucket, prefix = _upload_target(pipeline, bucket=args.bucket, prefix=args.prefix)
    s3 = pipeline.s3()
    for index, image in enumerate(images, start=1):
        key = f"{prefix}{image.name}"
        response = s3.put_object(Bucket=bucket, Key=key, Body=image.read_bytes(), Metadata=metadata)
        job = job_id_for(bucket=bucket, key=key, version=response.get("VersionId", ""))
        bar = "#" * (20 * index // len(images))
        print(f"[{bar:<20}] {index}/{len(images)}  s3://{bucket}/{key}  job {job}", flush=True)
    return 0


def _upload_target(
    pipeline: Pipeline, *, bucket: str | None, prefix: str | None
) -> tuple[str, str]:
    """Where images go: the stack's input bucket under the prefix the stack watches, unless the
    user names another bucket (a prefix there is theirs to choose)."""
    if bucket:
        return bucket, OTHER_BUCKET_PREFIX if prefix is None else prefix
    if prefix is None:
        if "InputPrefix" not in pipeline.outputs:
            raise CliError(
                "the stack has no InputPrefix output (deployed before it had one?); "
                "pass --prefix, or deploy the stack again"
            )
        prefix = pipeline.outputs["InputPrefix"]
    return pipeline.output("InputBucketName"), prefix


def upload_metadata(
    *,
    prompt: str,
    negative_prompt: str | None = None,
    seed: int | None = None,
    resolution: str | None = None,
    duration: int | None = None,
) -> dict[str, str]:
    """The user metadata the pipeline reads, encoded as S3 requires (ASCII, 2 KB at most)."""
    values = {
        "prompt": prompt,
        "negative-prompt": negative_prompt,
        "seed": None if seed is None else str(seed),
        "resolution": resolution,
        "duration": None if duration is None else str(duration),
    }
    metadata = {k: encode_metadata_value(v) for k, v in values.items() if v}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > METADATA_LIMIT_BYTES:
        raise CliError(
            f"the metadata is {size} bytes once encoded; S3 allows {METADATA_LIMIT_BYTES}. "
            "Shorten the prompt."
        )
    return metadata


def _images(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CliError(f"no images (.png, .jpg, .jpeg, .webp) in {path}")
            yield from found
        elif path.is_file():
            yield path
        else:
            raise CliError(f"no such file: {path}")


# --- following jobs -----------------------------------------------------------------------------


def _status(pipeline: Pipeline, args: argparse.Namespace) -> int:
    print(json.dumps(plain(_find_job(pipeline, args.job)), indent=2, sort_keys=True))
    return 0


def _wait(pipeline: Pipeline, args: argparse.Namespace) -> int:
    job = _find_job(pipeline, args.job)
    job_id = job["job_id"]
    deadline = time.monotonic() + args.timeout
    seen = None
    while True:
        if job["status"] != seen:
            seen = job["status"]
            print(f"{datetime.now(UTC):%H:%M:%S}  {job_id}  {seen}", flush=True)
        if seen in TERMINAL_STATUSES:
            break
        if time.monotonic() > deadline:
            raise CliError(f"job {job_id} is still {seen} after {args.timeout:.0f} s")
        time.sleep(1)
        job = _get_job(pipeline, job_id)
    if seen != JobStatus.COMPLETED:
        print(f"{job.get('error_code')}: {job.get('error_message')}", file=sys.stderr)
        return 1
    print(f"video: s3://{job['output_bucket']}/{job['output_key']}")
    return 0


def _jobs(pipeline: Pipeline, args: argparse.Namespace) -> int:
    since = _since(args.since) if args.since else None
    rows = []
    for item in _scan(pipeline):
        if args.status and item.get("status") != args.status:
            continue
        if since is not None:
            created = _created_at(item)
            if created is None or created < since:
                continue
        rows.append(item)
    rows.sort(key=lambda item: str(item.get("created_at", "")), reverse=True)
    print(f"{'JOB':<12}  {'STATUS':<9}  {'CREATED':<19}  {'KEY':<40}  DETAIL")
    for item in rows[: args.limit]:
        detail = item.get("error_code") or item.get("output_key") or ""
        print(
            f"{item['job_id'][:12]:<12}  {item['status']:<9}  "
            f"{str(item.get('created_at', ''))[:19]:<19}  "
            f"{str(item.get('source_key', ''))[:40]:<40}  {detail}"
        )
    print(
        f"{len(rows)} job(s)" + (f", newest {args.limit} shown" if len(rows) > args.limit else "")
    )
    return 0


def _download(pipeline: Pipeline, args: argparse.Namespace) -> int:
    job = _find_job(pipeline, args.job)
    if job["status"] != JobStatus.COMPLETED:
        raise CliError(f"job {job['job_id']} is {job['status']}; there is no video to download")
    if args.dir.exists() and not args.dir.is_dir():
        raise CliError(f"{args.dir} is a file, not a folder to download into")
    args.dir.mkdir(parents=True, exist_ok=True)
    target = args.dir / f"{Path(str(job['source_key'])).stem}-{job['job_id'][:8]}.mp4"
    pipeline.s3().download_file(job["output_bucket"], job["output_key"], str(target))
    print(target)
    return 0


def _retry(pipeline: Pipeline, args: argparse.Namespace) -> int:
    job = _find_job(pipeline, args.job)
    if job["status"] not in RETRYABLE_STATUSES:
        raise CliError(
            f"job {job['job_id']} is {job['status']}; only FAILED or EXPIRED jobs can be retried"
        )
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(f"a retry costs another {PRICE_PER_VIDEO}; confirm with --yes")
        answer = input(f"Submit {job['source_key']} to fal again for {PRICE_PER_VIDEO}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Not retried.")
            return 1
    # Copying the image onto itself is a new upload (a new version), so a new job: the failed
    # one stays as it was, for the record.
    s3 = pipeline.s3()
    source: CopySourceTypeDef = {"Bucket": job["source_bucket"], "Key": job["source_key"]}
    if job.get("source_version_id"):  # absent in a bucket without versioning
        source["VersionId"] = job["source_version_id"]
    head = s3.head_object(**source)
    copied = s3.copy_object(
        CopySource=source,
        Bucket=job["source_bucket"],
        Key=job["source_key"],
        Metadata=head.get("Metadata", {}),
        ContentType=head.get("ContentType", "binary/octet-stream"),
        MetadataDirective="REPLACE",
    )
    version = copied.get("VersionId", "")
    new_job = job_id_for(bucket=job["source_bucket"], key=job["source_key"], version=version)
    print(f"retrying as job {new_job}")
    return 0


def _redrive(pipeline: Pipeline, args: argparse.Namespace) -> int:
    """Dead letters back to their queue: upload events to the submit queue, undelivered webhooks
    to the notify queue. Safe to repeat: an upload that already has a job is never submitted
    twice, and a webhook keeps its webhook-id, which receivers deduplicate on."""
    sqs = pipeline.sqs()
    moved = 0
    for name, target_name in (
        ("SubmitDeadLetterQueueUrl", "SubmitQueueUrl"),
        ("UploadRuleDeadLetterQueueUrl", "SubmitQueueUrl"),
        ("NotifyDeadLetterQueueUrl", "NotifyQueueUrl"),
    ):
        source = pipeline.outputs.get(name)
        target = pipeline.outputs.get(target_name, "")
        while source:
            messages = sqs.receive_message(
                QueueUrl=source, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                sqs.send_message(QueueUrl=target, MessageBody=message["Body"])
                sqs.delete_message(QueueUrl=source, ReceiptHandle=message["ReceiptHandle"])
                moved += 1
    print(f"re-drove {moved} message(s)")
    return 0


# --- lookups ------------------------------------------------------------------------------------


def _find_job(pipeline: Pipeline, reference: str) -> dict[str, Any]:
    if JOB_ID.fullmatch(reference):
        return _get_job(pipeline, reference)
    bucket = pipeline.output("InputBucketName")
    try:
        head = pipeline.s3().head_object(Bucket=bucket, Key=reference)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey"):
            raise CliError(f"no object {reference!r} in {bucket} and no such job id") from None
        raise
    if head.get("VersionId"):
        return _get_job(
            pipeline, job_id_for(bucket=bucket, key=reference, version=head["VersionId"])
        )
    # An unversioned bucket: the newest job for that key.
    matches = [item for item in _scan(pipeline) if item.get("source_key") == reference]
    if not matches:
        raise CliError(f"no job for {reference!r} yet")
    return max(matches, key=lambda item: str(item.get("created_at", "")))


def _get_job(pipeline: Pipeline, job_id: str) -> dict[str, Any]:
    item = pipeline.table().get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
    if not item:
        raise CliError(f"no job {job_id}")
    return dict(item)


def _scan(pipeline: Pipeline) -> Iterator[dict[str, Any]]:
    table = pipeline.table()
    arguments: dict[str, Any] = {}
    while True:
        page = table.scan(**arguments)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _since(value: str) -> datetime:
    """The moment ``--since`` names, in UTC; a date/time without an offset is taken as UTC."""
    match = re.fullmatch(r"(\d+)([mhd])", value)
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--since takes an ISO date/time or 30m, 2h, 3d; got {value!r}") from None
    return _in_utc(moment)


def _created_at(item: dict[str, Any]) -> datetime | None:
    try:
        return _in_utc(datetime.fromisoformat(str(item.get("created_at", ""))))
    except ValueError:
        return None


def _in_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _describe(exc: OSError) -> str:
    if exc.filename and exc.strerror:
        return f"cannot use {exc.filename}: {exc.strerror}"
    return str(exc)
