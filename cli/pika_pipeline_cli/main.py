"""The ``pika-pipeline`` command: upload images, follow jobs, fetch videos, retry, re-drive, and
steer the dispatch queue (queue, pause, resume, cancel)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from s3transfer.subscribers import BaseSubscriber

from pika_pipeline.aws.errors import error_code
from pika_pipeline.fal import pika
from pika_pipeline.fal.prices import usd_per_video
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.job import plain
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.submit.video_request import encode_metadata_value
from pika_pipeline_cli import batches, queue_control, spend
from pika_pipeline_cli.queue_control import AT_FAL, CANCELLED, FINAL_STATUSES, LANES, QUEUED
from pika_pipeline_cli.resources import CliError, Pipeline, find_pipeline
from pika_pipeline_cli.views import (
    batch_view,
    batches_view,
    budget_view,
    job_view,
    queue_view,
    spend_view,
    wait_view,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef
    from s3transfer.futures import TransferFuture

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
METADATA_LIMIT_BYTES = 2048  # S3's limit on user metadata, keys and values together
# What a retry costs: the endpoint the pipeline is built for (FAL_ENDPOINT is not a parameter).
PRICE_PER_VIDEO = f"${usd_per_video(pika.ENDPOINT):.2f}"
OTHER_BUCKET_PREFIX = "uploads/"  # --bucket without --prefix
JOB_ID = re.compile(r"[0-9a-f]{32}")
JOB_ID_PREFIX = re.compile(r"[0-9a-f]{6,31}")  # short enough to type, long enough to be one job
MAX_STEM_CHARS = 100  # with the job and extension, well inside Windows' 255-character names
_UNSAFE_IN_NAMES = re.compile(r"[^\w.-]")  # \w: letters and digits of any script, and _
# What no file name may hold on Windows or POSIX: separators, a drive's or stream's colon,
# wildcards, control characters. A readable key's name keeps everything else (spaces included).
_FORBIDDEN_IN_NAMES = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]}
)
# fal could not make the video, or never finished it: another upload may well succeed. The others
# are final for a reason (a video exists, the upload is unusable) or still on their way.
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.EXPIRED, CANCELLED})
# Uploads at once: enough to hide S3's per-request latency for hundreds of small images.
UPLOAD_CONCURRENCY = 16
WATCH_RATE_EVERY_SECONDS = 30  # queue --watch measures the drain rate (a table scan) this often


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        pipeline = find_pipeline(stack=args.stack, local_stack_file=args.local_stack)
        if pipeline.found_implicitly:
            print(pipeline.found_implicitly, file=sys.stderr)  # stdout stays the command's output
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
    upload.add_argument(
        "--batch",
        help="the batch the images share fal with, round-robin against other batches "
        "(default: the first folder of the key under the input prefix)",
    )
    upload.add_argument("--priority", choices=LANES, help="dispatch order (default normal)")
    upload.set_defaults(run=_upload)

    status = commands.add_parser("status", help="a job, readable")
    status.add_argument("job", metavar="KEY|JOB_ID")
    status.add_argument("--json", action="store_true", help="the raw record, for scripts")
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

    queue = commands.add_parser("queue", help="waiting jobs, requests at fal, time to drain")
    queue.add_argument("--watch", action="store_true", help="a live view, until Ctrl-C")
    queue.add_argument("--json", action="store_true", help="the numbers, for scripts")
    queue.set_defaults(run=_queue)

    batch = commands.add_parser(
        "batch", help="a batch's progress: jobs by status, spend, failures by code"
    )
    batch.add_argument("name", metavar="NAME", help='the batch ("" for files without a folder)')
    batch.add_argument("--watch", action="store_true", help="a live view, until Ctrl-C")
    batch.add_argument("--json", action="store_true", help="the numbers, for scripts")
    batch.set_defaults(run=_batch)
    batches_command = commands.add_parser("batches", help="the batches, latest activity first")
    batches_command.add_argument("--json", action="store_true", help="the numbers, for scripts")
    batches_command.set_defaults(run=_batches)

    pause = commands.add_parser("pause", help="stop dispatching to fal (uploads keep waiting)")
    pause.set_defaults(run=_pause)
    resume = commands.add_parser("resume", help="dispatch again")
    resume.set_defaults(run=_resume)

    cancel = commands.add_parser(
        "cancel", help="cancel waiting jobs (nothing is paid), or a job's request at fal"
    )
    which = cancel.add_mutually_exclusive_group(required=True)
    which.add_argument("job", nargs="?", metavar="KEY|JOB_ID")
    which.add_argument("--batch", help="every waiting job of this batch")
    which.add_argument("--all-queued", action="store_true", help="every waiting job")
    cancel.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    cancel.set_defaults(run=_cancel)

    spend_command = commands.add_parser("spend", help="spend at fal per day and per batch")
    spend_command.add_argument("--days", type=int, default=7, help="how many UTC days (default 7)")
    spend_command.add_argument("--json", action="store_true", help="the numbers, for scripts")
    spend_command.set_defaults(run=_spend)
    budget = commands.add_parser("budget", help="the spend limits and what remains of them")
    budget.add_argument("--json", action="store_true", help="the numbers, for scripts")
    budget.set_defaults(run=_budget)
    budget_commands = budget.add_subparsers(metavar="set")
    budget_set = budget_commands.add_parser(
        "set", help="change the daily and/or monthly limit now (0 = no limit)"
    )
    budget_set.add_argument("--daily", type=_amount, help="USD per UTC day")
    budget_set.add_argument("--monthly", type=_amount, help="USD per UTC month")
    budget_set.set_defaults(run=_budget_set)
    return parser


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"an amount in USD >= 0, got {text!r}")
    return value


def _spend(pipeline: Pipeline, args: argparse.Namespace) -> int:
    report = spend.spend_report(pipeline, days=max(1, args.days))
    if args.json:
        print(spend.dumps(report.as_json()))
    else:
        Console().print(spend_view(report))
    return 0


def _budget(pipeline: Pipeline, args: argparse.Namespace) -> int:
    state = spend.budget_state(pipeline)
    if args.json:
        print(
            spend.dumps(
                {
                    "daily_usd": state.limits.daily_usd,
                    "monthly_usd": state.limits.monthly_usd,
                    "day": state.day,
                    "spent_today_usd": state.today.reserved_usd,
                    "videos_today": state.today.videos,
                    "refunded_today_usd": state.today.refunded_usd,
                    "refunds_today": state.today.refunds,
                    "remaining_today_usd": state.remaining(state.limits.daily_usd, state.today),
                    "month": state.month,
                    "spent_this_month_usd": state.this_month.reserved_usd,
                    "videos_this_month": state.this_month.videos,
                    "remaining_this_month_usd": state.remaining(
                        state.limits.monthly_usd, state.this_month
                    ),
                }
            )
        )
    else:
        Console().print(budget_view(state))
    return 0


def _budget_set(pipeline: Pipeline, args: argparse.Namespace) -> int:
    if args.daily is None and args.monthly is None:
        raise CliError("budget set: give --daily and/or --monthly")
    spend.set_budget(
        pipeline,
        daily=args.daily,
        monthly=args.monthly,
        by=queue_control.operator_name(pipeline),
    )
    return _budget(pipeline, argparse.Namespace(json=False))


# --- upload -----------------------------------------------------------------------------------


def _upload(pipeline: Pipeline, args: argparse.Namespace) -> int:
    images = upload_names(args.images)
    sizes = {image: image.stat().st_size for image in images}  # unreadable: one line, before any
    metadata = upload_metadata(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        resolution=args.resolution,
        duration=args.duration,
        batch=args.batch,
        priority=args.priority,
    )
    bucket, prefix = _upload_target(pipeline, bucket=args.bucket, prefix=args.prefix)
    s3 = pipeline.s3(connections=UPLOAD_CONCURRENCY)
    versions = _VersionIds(s3)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(f"{{task.fields[images]}}/{len(images)} images"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    failed: list[tuple[Path, BaseException]] = []
    config = TransferConfig(max_concurrency=UPLOAD_CONCURRENCY)
    with (
        Progress(*columns, console=Console()) as progress,
        create_transfer_manager(s3, config) as manager,
    ):
        task = progress.add_task("Uploading", total=sum(sizes.values()), images=0)
        sent = _BytesSent(progress, task)
        futures = {
            image: manager.upload(
                str(image),
                bucket,
                f"{prefix}{name}",
                extra_args={"Metadata": metadata},
                subscribers=[sent],
            )
            for image, name in images.items()
        }
        done = 0
        for image, future in futures.items():
            key = f"{prefix}{images[image]}"
            try:
                future.result()
            except Exception as exc:  # one image's failure must not hide the others' jobs
                failed.append((image, exc))
                continue
            done += 1
            progress.update(task, images=done)
            job = job_id_for(bucket=bucket, key=key, version=versions.of(key))
            progress.console.print(f"s3://{bucket}/{key}  job {job}", soft_wrap=True)
    if failed:
        first, reason = failed[0]
        raise CliError(f"{len(failed)} of {len(images)} image(s) not uploaded; {first}: {reason}")
    return 0


class _VersionIds:
    """The version id S3 gave each upload (with the key, a job's identity), which the transfer
    manager does not return: taken from the PutObject / CompleteMultipartUpload answers."""

    def __init__(self, s3: S3Client) -> None:
        self._versions: dict[str, str] = {}
        self._lock = threading.Lock()
        for operation in ("PutObject", "CompleteMultipartUpload"):
            s3.meta.events.register(f"before-parameter-build.s3.{operation}", self._remember_key)
            s3.meta.events.register(f"after-call.s3.{operation}", self._record)

    def of(self, key: str) -> str:
        with self._lock:
            return self._versions.get(key, "")

    def _remember_key(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["upload_key"] = params["Key"]  # the request's context reaches its after-call

    def _record(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "upload_key" in context:
            with self._lock:
                self._versions[context["upload_key"]] = str(parsed.get("VersionId", ""))


class _BytesSent(BaseSubscriber):
    """Moves the bar as bytes leave, from the transfer manager's threads (rich locks)."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def on_progress(self, future: TransferFuture, bytes_transferred: int, **_: Any) -> None:
        self._progress.update(self._task, advance=bytes_transferred)


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
    batch: str | None = None,
    priority: str | None = None,
) -> dict[str, str]:
    """The user metadata the pipeline reads, encoded as S3 requires (ASCII, 2 KB at most)."""
    values = {
        "prompt": prompt,
        "negative-prompt": negative_prompt,
        "seed": None if seed is None else str(seed),
        "resolution": resolution,
        "duration": None if duration is None else str(duration),
        "batch": batch,
        "priority": priority,
    }
    metadata = {k: encode_metadata_value(v) for k, v in values.items() if v}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > METADATA_LIMIT_BYTES:
        raise CliError(
            f"the metadata is {size} bytes once encoded; S3 allows {METADATA_LIMIT_BYTES}. "
            "Shorten the prompt."
        )
    return metadata


def upload_names(paths: list[Path]) -> dict[Path, str]:
    """Each image to upload and its key below the prefix: a file its own name; a folder's images
    under the folder's name, subfolders kept (``catalog/shoes/1.jpg``), so the folder is the
    default batch and same-named images in different subfolders stay different uploads."""
    names: dict[Path, str] = {}
    for path in paths:
        if path.is_dir():
            found = {
                image: (Path(path.resolve().name) / image.relative_to(path)).as_posix()
                for image in sorted(path.rglob("*"))
                # not is_dir(): a broken link is listed, and fails with its own clear line
                if not image.is_dir()
                and image.suffix.lower() in IMAGE_SUFFIXES
                # hidden files and folders (.git, macOS's ._photo.jpg) are not the user's images
                and not any(part.startswith(".") for part in image.relative_to(path).parts)
            }
            if not found:
                raise CliError(f"no images (.png, .jpg, .jpeg, .webp) in {path}")
            names |= found
        elif path.is_file():
            names[path] = path.name
        else:
            raise CliError(f"no such file: {path}")
    taken: dict[str, Path] = {}
    for image, name in names.items():
        if name in taken:  # the second would silently be a re-upload of the first
            raise CliError(f"{taken[name]} and {image} would both be uploaded as {name}")
        taken[name] = image
    return names


# --- following jobs -----------------------------------------------------------------------------


def _status(pipeline: Pipeline, args: argparse.Namespace) -> int:
    job = _find_job(pipeline, args.job)
    if args.json:
        print(json.dumps(plain(job), indent=2, sort_keys=True))
    else:
        Console(soft_wrap=True).print(job_view(plain(job)))
    return 0


def _wait(pipeline: Pipeline, args: argparse.Namespace) -> int:
    job = plain(_find_job(pipeline, args.job))
    job_id = job["job_id"]
    deadline = time.monotonic() + args.timeout
    history: list[tuple[datetime, str]] = [(datetime.now(UTC), job["status"])]
    with Live(wait_view(job_id, history, job), console=Console(), auto_refresh=False) as live:
        while job["status"] not in FINAL_STATUSES:
            if time.monotonic() > deadline:
                break
            time.sleep(1)
            job = plain(_get_job(pipeline, job_id))
            if job["status"] != history[-1][1]:
                history.append((datetime.now(UTC), job["status"]))
            live.update(wait_view(job_id, history, job), refresh=True)
    status = job["status"]
    if status not in FINAL_STATUSES:
        raise CliError(f"job {job_id} is still {status} after {args.timeout:.0f} s")
    if job.get("correlation_id"):
        print(f"correlation id: {job['correlation_id']}")
    if status != JobStatus.COMPLETED:
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
    # Whole ids: the one a person copies from here is what status, download and cancel take.
    print(f"{'JOB':<32}  {'STATUS':<9}  {'CREATED':<19}  {'KEY':<40}  DETAIL")
    for item in rows[: args.limit]:
        detail = item.get("error_code") or item.get("output_key") or ""
        print(
            f"{item['job_id']:<32}  {item['status']:<9}  "
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
    target = args.dir / video_file_name(
        str(job["source_key"]), str(job["job_id"]), output_key=str(job["output_key"])
    )
    pipeline.s3().download_file(job["output_bucket"], job["output_key"], str(target))
    print(target)
    return 0


def video_file_name(source_key: str, job_id: str, output_key: str | None = None) -> str:
    """The video's readable name (its key's base name as is, ``output_key``), or else the
    upload's name then the job, reduced to letters, digits, ``.``, ``_`` and ``-``.

    A video at its staging key (``.../<job id>/<request>.mp4``: an older upload of a key whose
    newer upload holds the readable one) is named after its upload and job, so the two never
    share a file name. The key is anyone's who could upload: on Windows ``C:evil`` is
    drive-relative, ``x.png:ads`` an NTFS stream, ``CON.x`` a device, and backslashes separate
    folders. None survives this.
    """
    readable = output_key is not None and f"/{job_id}/" not in f"/{output_key}"
    name = re.split(r"[/\\]", output_key if output_key and readable else source_key)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    unsafe, trimmed = (_FORBIDDEN_IN_NAMES, ". ") if readable else (_UNSAFE_IN_NAMES, ". _")
    # Windows drops trailing dots and spaces; a leading dot hides the file (or is "..").
    stem = unsafe.sub("_", stem).strip(trimmed)[:MAX_STEM_CHARS].strip(trimmed) or "video"
    if stem.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        stem = f"_{stem}"
    return f"{stem}.mp4" if readable else f"{stem}-{job_id[:8]}.mp4"


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


# --- the dispatch queue ------------------------------------------------------------------------


def _queue(pipeline: Pipeline, args: argparse.Namespace) -> int:
    def snapshot(rate: float | None = None) -> queue_control.QueueSnapshot:
        left = spend.budget_state(pipeline).left_usd()
        return queue_control.snapshot(pipeline, rate_per_second=rate, budget_left_usd=left)

    if args.json:
        print(json.dumps(snapshot().as_json(), indent=2))
        return 0
    console = Console()
    if not args.watch:
        console.print(queue_view(snapshot()))
        return 0
    rate = queue_control.measured_rate(pipeline)
    measured = time.monotonic()
    with Live(queue_view(snapshot(rate)), console=console) as live:
        while True:  # until Ctrl-C (main answers it with 130)
            time.sleep(2)
            if time.monotonic() - measured > WATCH_RATE_EVERY_SECONDS:
                rate, measured = queue_control.measured_rate(pipeline), time.monotonic()
            live.update(queue_view(snapshot(rate)))


def _batch(pipeline: Pipeline, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(batches.as_json(batches.batch_progress(pipeline, args.name)), indent=2))
        return 0
    console = Console()
    if not args.watch:
        console.print(batch_view(batches.batch_progress(pipeline, args.name)))
        return 0
    with Live(batch_view(batches.batch_progress(pipeline, args.name)), console=console) as live:
        while True:  # until Ctrl-C (main answers it with 130)
            time.sleep(2)
            live.update(batch_view(batches.batch_progress(pipeline, args.name)))


def _batches(pipeline: Pipeline, args: argparse.Namespace) -> int:
    recent = batches.recent_batches(pipeline)
    if args.json:
        print(json.dumps([batches.as_json(b) for b in recent], indent=2))
        return 0
    if not recent:
        print("no batches yet")
        return 0
    Console().print(batches_view(recent))
    return 0


def _pause(pipeline: Pipeline, args: argparse.Namespace) -> int:
    state = queue_control.pause(pipeline, by=queue_control.operator_name(pipeline))
    since = state.since.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if state.since else "now"
    print(
        f"dispatch paused (since {since}, by {state.by}); jobs already at fal finish, "
        "uploads wait. `pika-pipeline resume` starts dispatching again."
    )
    return 0


def _resume(pipeline: Pipeline, args: argparse.Namespace) -> int:
    queue_control.resume(pipeline, by=queue_control.operator_name(pipeline))
    print("dispatch resumed")
    return 0


def _cancel(pipeline: Pipeline, args: argparse.Namespace) -> int:
    by = queue_control.operator_name(pipeline)
    if args.job:
        return _cancel_one(pipeline, plain(_find_job(pipeline, args.job)), by=by)
    waiting = [job.job_id for job in queue_control.waiting_jobs(pipeline, batch=args.batch)]
    which = "waiting job(s)" if args.all_queued else f"waiting job(s) of batch {args.batch!r}"
    if not waiting:
        print(f"no {which}")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(f"this cancels {len(waiting)} {which}; confirm with --yes")
        answer = input(f"Cancel {len(waiting)} {which}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing cancelled.")
            return 1
    cancelled = sum(
        1 for job_id in waiting if queue_control.cancel_waiting(pipeline, job_id, by=by)
    )
    print(f"cancelled {cancelled} {which}; nothing was paid for them")
    if cancelled < len(waiting):
        print(f"{len(waiting) - cancelled} had left the queue meanwhile (dispatched or cancelled)")
    return 0


def _cancel_one(pipeline: Pipeline, job: dict[str, Any], *, by: str) -> int:
    job_id = job["job_id"]
    if job["status"] == QUEUED:
        if queue_control.cancel_waiting(pipeline, job_id, by=by):
            print(f"cancelled job {job_id}; it never reached fal, nothing was paid")
            return 0
        job = plain(_get_job(pipeline, job_id))  # dispatched meanwhile: now it is at fal
    if job["status"] in AT_FAL:
        if not queue_control.request_fal_cancel(pipeline, job_id, by=by):
            now = _get_job(pipeline, job_id)["status"]
            raise CliError(f"job {job_id} finished meanwhile: {now}")
        if queue_control.run_reconciler_now(pipeline):
            print(f"job {job_id} is at fal; the reconciler is cancelling its request now")
        else:
            print(f"job {job_id} is at fal; the reconciler cancels its request at its next run")
        return 0
    raise CliError(f"job {job_id} is {job['status']}; there is nothing to cancel")


# --- lookups ------------------------------------------------------------------------------------


def _find_job(pipeline: Pipeline, reference: str) -> dict[str, Any]:
    if JOB_ID.fullmatch(reference):
        return _get_job(pipeline, reference)
    bucket = pipeline.output("InputBucketName")
    try:
        head = pipeline.s3().head_object(Bucket=bucket, Key=reference)
    except ClientError as exc:
        if error_code(exc) not in ("404", "NoSuchKey"):
            raise
        if JOB_ID_PREFIX.fullmatch(reference):
            return _job_by_prefix(pipeline, reference)
        raise CliError(f"no object {reference!r} in {bucket} and no such job id") from None
    if head.get("VersionId"):
        return _get_job(
            pipeline, job_id_for(bucket=bucket, key=reference, version=head["VersionId"])
        )
    # An unversioned bucket: the newest job for that key.
    matches = [item for item in _scan(pipeline) if item.get("source_key") == reference]
    if not matches:
        raise CliError(f"no job for {reference!r} yet")
    return max(matches, key=lambda item: str(item.get("created_at", "")))


def _job_by_prefix(pipeline: Pipeline, prefix: str) -> dict[str, Any]:
    """The one job whose id starts with ``prefix`` (as git takes a short commit id): a scan, so
    only when the reference is no key and no whole id."""
    matches = list(
        _scan(
            pipeline,
            FilterExpression=Attr("job_id").begins_with(prefix),
            ProjectionExpression="job_id",
        )
    )
    if len(matches) > 1:
        raise CliError(f"{len(matches)} jobs have ids starting {prefix!r}; give more of the id")
    if not matches:
        raise CliError(f"no job id starts with {prefix!r}, and no object has that key")
    return _get_job(pipeline, matches[0]["job_id"])


def _get_job(pipeline: Pipeline, job_id: str) -> dict[str, Any]:
    item = pipeline.table().get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
    if not item:
        raise CliError(f"no job {job_id}")
    return dict(item)


def _scan(pipeline: Pipeline, **filters: Any) -> Iterator[dict[str, Any]]:
    table = pipeline.table()
    arguments: dict[str, Any] = dict(filters)
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
