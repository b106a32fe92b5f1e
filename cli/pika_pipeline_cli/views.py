"""What the commands show a person: the queue, a job, a job being followed, a batch (rich
renderables)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from pika_pipeline.batches.progress import BatchProgress
from pika_pipeline.submit.video_request import decode_metadata_value
from pika_pipeline_cli.queue_control import QUEUED, QueueSnapshot, parse_time
from pika_pipeline_cli.spend import BudgetState, SpendReport, SpendRow

# Record fields a person reads as times, in the order `status` shows them.
TIMES = (
    ("created_at", "Created"),
    ("queued_at", "Queued"),
    ("estimated_start_at", "Estimated start"),
    ("dispatched_at", "Dispatched"),
    ("updated_at", "Updated"),
    ("next_check_at", "Next check"),
    ("expires_at", "Record deleted"),
)


def local_time(moment: datetime | None) -> str:
    """A moment in the reader's time zone, as a date and time, never epoch seconds."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def queue_view(queue: QueueSnapshot) -> RenderableType:
    now = queue.taken_at
    lines = Text()
    if queue.pause.paused:
        since = queue.pause.since
        ago = f" ({duration((now - since).total_seconds())} ago)" if since else ""
        lines.append("Dispatch: PAUSED", style="bold red")
        lines.append(f" since {local_time(since)}{ago} by {queue.pause.by or 'unknown'}\n")
    else:
        lines.append("Dispatch: running\n", style="green")
    lines.append(
        f"At fal:   {queue.in_flight} of {queue.capacity} requests "
        f"(FalConcurrency {queue.concurrency} + FalQueueHeadroom {queue.headroom})\n"
    )
    oldest = queue.oldest()
    lines.append(f"Waiting:  {len(queue.waiting)} job(s)")
    if oldest and oldest.queued_at:
        waited = duration((now - oldest.queued_at).total_seconds())
        lines.append(f", oldest {oldest.job_id} queued {local_time(oldest.queued_at)} ({waited})")
    lines.append("\n")
    blocked = queue.waiting_for_budget()
    if queue.budget_left_usd is not None:
        lines.append(f"Budget:   {_usd(queue.budget_left_usd)} left; ")
        if blocked:
            lines.append(
                f"{len(blocked)} job(s) wait for budget, not for a slot "
                "(pika-pipeline budget set raises it)\n",
                style="bold yellow",
            )
        else:
            lines.append("no job waits for budget\n")
    rate = queue.rate_per_second
    measured = f"{rate * 60:.1f} jobs/min measured over 15 min" if rate else "no rate measured yet"
    if queue.pause.paused and queue.waiting:
        drain = "not while paused"
    elif blocked:
        drain = "not within the budget left"
    else:
        drain = duration(queue.drain_seconds())
    lines.append(f"Drain:    {drain} ({measured})")
    if not queue.waiting:
        return lines
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("PRIORITY")
    table.add_column("BATCH")
    table.add_column("WAITING", justify="right")
    table.add_column("OLDEST QUEUED")
    for row in queue.rows():
        table.add_row(row.lane, row.batch or "(none)", str(row.waiting), local_time(row.oldest))
    return Group(lines, Text(), table)


def job_view(item: dict[str, Any]) -> RenderableType:
    """A job record for a person: the prompt as written, local times, where it stands."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")

    def row(label: str, value: Any) -> None:
        if value is not None and value != "":
            table.add_row(label, Text(str(value)))

    row("Job", item.get("job_id"))
    row("Status", item.get("status"))
    if item.get("status") == QUEUED:
        position = item.get("queue_position")
        if position is not None:
            # Positions count from 1 (dispatch/queue_report.py): the head is next.
            ahead = int(position) - 1
            row("Position", "next" if ahead <= 0 else f"{ahead} job(s) ahead of it")
        if item.get("waiting_for") == "budget":
            row("Waiting for", "budget (pika-pipeline budget)")
    row("Image", _s3_url(item.get("source_bucket"), item.get("source_key")))
    for field, label in (("prompt", "Prompt"), ("negative_prompt", "Negative prompt")):
        if item.get(field):
            row(label, decode_metadata_value(str(item[field])))
    row("Resolution", item.get("resolution"))
    row("Duration", f"{item['duration']} s" if item.get("duration") else None)
    row("Seed", item.get("seed"))
    row("Priority", item.get("priority"))
    row("Correlation id", item.get("correlation_id"))
    if "batch" in item:
        row("Batch", item["batch"] or "(none)")
    for field, label in TIMES:
        if field in item and (field != "next_check_at" or item.get("status") != QUEUED):
            row(label, local_time(parse_time(item[field])))
    if item.get("price_usd") is not None:
        row("Price", f"${item['price_usd']}")
    if item.get("refunded_usd") is not None:
        row("Refunded", f"${item['refunded_usd']} ({item.get('refund_reason', '')})")
    row("fal request", item.get("request_id"))
    row("Video", _s3_url(item.get("output_bucket"), item.get("output_key")))
    if item.get("error_code"):
        row("Error", f"{item['error_code']}: {item.get('error_message', '')}")
    return table


def wait_view(job_id: str, history: list[tuple[datetime, str]], item: dict[str, Any]) -> Table:
    """The statuses a followed job went through, the current one with its time so far."""
    table = Table(title=f"job {job_id}", title_justify="left", box=None, header_style="bold")
    table.add_column("SINCE")
    table.add_column("STATUS")
    table.add_column("FOR", justify="right")
    table.add_column("DETAIL", overflow="fold")
    now = datetime.now(UTC)
    for index, (since, status) in enumerate(history):
        until = history[index + 1][0] if index + 1 < len(history) else now
        detail = ""
        if index == len(history) - 1:
            detail = _detail(item)
        table.add_row(
            since.astimezone().strftime("%H:%M:%S"),
            status,
            duration((until - since).total_seconds()),
            detail,
        )
    return table


def _detail(item: dict[str, Any]) -> str:
    if item.get("status") == QUEUED:
        parts = []
        if item.get("queue_position") is not None:
            parts.append(f"position {item['queue_position']}")
        start = parse_time(item.get("estimated_start_at"))
        if start:
            parts.append(f"starts about {local_time(start)}")
        return ", ".join(parts)
    if item.get("error_code"):
        return str(item["error_code"])
    return str(item.get("request_id") or "")


def _s3_url(bucket: Any, key: Any) -> str | None:
    return f"s3://{bucket}/{key}" if bucket and key else None


def _usd(value: Decimal | None) -> str:
    return "no limit" if value is None else f"${value:.2f}"


def budget_view(state: BudgetState) -> RenderableType:
    """The limits in force and what remains of them today and this month (UTC)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("PERIOD (UTC)", "LIMIT", "SPENT", "VIDEOS", "REMAINING", "REFUNDED"):
        table.add_column(column, justify="left" if column.startswith("PERIOD") else "right")
    for label, limit, spend in (
        (f"day {state.day}", state.limits.daily_usd, state.today),
        (f"month {state.month}", state.limits.monthly_usd, state.this_month),
    ):
        table.add_row(
            label,
            _usd(limit if limit > 0 else None),
            f"${spend.reserved_usd:.2f}",
            str(spend.videos),
            _usd(state.remaining(limit, spend)),
            f"${spend.refunded_usd:.2f} ({spend.refunds})",
        )
    source = (
        f"set by {state.overridden_by} (pika-pipeline budget set)"
        if state.overridden_by
        else "the template's DailyBudgetUSD / MonthlyBudgetUSD"
    )
    return Group(table, Text(f"Limits: {source}. Spent includes videos still at fal."))


def spend_view(report: SpendReport) -> RenderableType:
    """Spend per UTC day, then per day and batch: videos and dollars, and what is reserved for
    videos not finished yet."""

    def table(first: list[str]) -> Table:
        t = Table(box=None, pad_edge=False, header_style="bold")
        for column in first:
            t.add_column(column)
        for column in ("VIDEOS", "SPENT", "AT FAL NOW", "REFUNDED"):
            t.add_column(column, justify="right")
        return t

    def cells(row: SpendRow) -> list[str]:
        return [
            str(row.videos),
            f"${row.usd:.2f}",
            f"{row.in_flight_videos} (${row.in_flight_usd:.2f})",
            f"{row.refunded_videos} (${row.refunded_usd:.2f})",
        ]

    days = table(["DAY (UTC)"])
    for day in report.days:
        days.add_row(day, *cells(report.by_day.get(day, SpendRow())))
    batches = table(["DAY (UTC)", "BATCH"])
    for (day, batch), row in sorted(report.by_batch.items()):
        batches.add_row(day, batch or "(none)", *cells(row))
    return Group(days, Text(), batches)


def batch_view(batch: BatchProgress, *, now_epoch: float | None = None) -> RenderableType:
    """A batch's progress: a bar of finished jobs, the open jobs by where they are, the counts
    by status, spend, failures, and where its summary is."""
    now = time.time() if now_epoch is None else now_epoch
    bar = Progress(
        TextColumn(f"[bold]{batch.batch or '(no folder)'}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("finished"),
    )
    bar.add_task("finished", total=max(batch.jobs, 1), completed=batch.finished_jobs)
    counts = Table(box=None, pad_edge=False, header_style="bold")
    counts.add_column("STATUS")
    counts.add_column("JOBS", justify="right")
    counts.add_row("waiting", str(batch.queued))
    counts.add_row("at fal", str(batch.at_fal))
    if batch.open_before_split:
        # Counted before waiting and at fal were told apart: only known to be open.
        counts.add_row("waiting or at fal", str(batch.open_before_split))
    for status, number in batch.statuses.items():
        if number:
            counts.add_row(status, str(number))
    lines = Text()
    lines.append(f"Spent so far: ${batch.spent_usd:.2f}\n")
    lines.append(
        f"Uploads: first {local_time(parse_time(batch.first_upload_at))}, "
        f"last {local_time(parse_time(batch.last_upload_at))}\n"
    )
    announcing = batch.being_announced(now_epoch=now)
    if announcing is not None:
        lines.append(f"Summary {announcing} being announced", style="yellow")
    elif batch.summary_due or not batch.summaries:
        lines.append("Not complete yet" if batch.open_jobs else "Complete once no upload comes")
    else:
        lines.append(f"Completed (summary {batch.summaries} published)", style="green")
    parts: list[RenderableType] = [bar, counts, lines]
    if batch.failures:
        failures = Table(box=None, pad_edge=False, header_style="bold")
        failures.add_column("FAILURE CODE")
        failures.add_column("JOBS", justify="right")
        for code, number in batch.failures.items():
            failures.add_row(code, str(number))
        parts += [Text(), failures]
    return Group(*parts)


def batches_view(batches: list[BatchProgress], *, now_epoch: float | None = None) -> RenderableType:
    now = time.time() if now_epoch is None else now_epoch
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = (
        "BATCH",
        "JOBS",
        "WAITING",
        "AT FAL",
        "COMPLETED",
        "FAILED",
        "SPENT",
        "SUMMARY",
        "LAST ACTIVITY",
    )
    for column in columns:
        left = column in ("BATCH", "SUMMARY", "LAST ACTIVITY")
        table.add_column(column, justify="left" if left else "right")
    for b in batches:
        waiting = str(b.queued)
        if b.open_before_split:
            waiting += f" (+{b.open_before_split} waiting or at fal)"
        table.add_row(
            b.batch or "(no folder)",
            str(b.jobs),
            waiting,
            str(b.at_fal),
            str(b.statuses.get("COMPLETED", 0)),
            str(b.finished_jobs - b.statuses.get("COMPLETED", 0)),
            f"${b.spent_usd:.2f}",
            _summary_cell(b, now),
            local_time(parse_time(b.last_activity_at)),
        )
    return table


def _summary_cell(batch: BatchProgress, now: float) -> str:
    """Where a batch's summary is, in a list: being announced, published, or not yet."""
    announcing = batch.being_announced(now_epoch=now)
    if announcing is not None:
        return f"{announcing} being announced"
    if batch.summaries and not batch.summary_due:
        return f"{batch.summaries} published"
    return "-"
