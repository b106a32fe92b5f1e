"""What an operator reads about a job: log lines that carry its correlation ids, and the
pipeline's metrics (EMF) in the one namespace the alarms and the dashboard watch."""

from __future__ import annotations

import json
from typing import Any

from local.template import load_template
from tests.support.pipeline import Pipeline, eventually


def test_every_log_line_about_a_job_carries_its_correlation_ids(pipeline: Pipeline) -> None:
    marks = {
        f: pipeline.log_mark(f) for f in ("SubmitFunction", "WebhookFunction", "ReconcilerFunction")
    }
    # An outage at dispatch leaves the job to the reconciler, which submits it again; a
    # duplicate delivery makes a second webhook call.
    pipeline.fal_faults(submit=[500], delivery=["duplicate"])

    job_id = pipeline.upload({"prompt": "correlated", "duration": "1"})
    eventually(lambda: (pipeline.job(job_id) or {}).get("last_error"))
    job = pipeline.reconcile_until_final(job_id)
    eventually(lambda: len(_deliveries(pipeline, job_id)) == 2 or None)

    key, request_id = job["source_key"], job["request_id"]
    logs = {f: pipeline.log_entries(f, since=mark) for f, mark in marks.items()}
    submitted = [line for line in logs["SubmitFunction"] if line.get("job_id") == job_id]
    reconciled = [line for line in logs["ReconcilerFunction"] if line.get("job_id") == job_id]
    stored = [line for line in logs["WebhookFunction"] if line.get("job_id") == job_id]
    assert job["status"] == "COMPLETED"
    assert [line["message"] for line in submitted] == [
        "Queued",
        "Dispatched",
        "fal unavailable; the job will be submitted again",
    ]
    assert "Submitted to fal" in [line["message"] for line in reconciled]
    assert {line.get("object_key") for line in [*submitted, *reconciled]} == {key}, [
        line for line in [*submitted, *reconciled] if "object_key" not in line
    ]
    (resubmitted,) = [line for line in reconciled if line["message"] == "Submitted to fal"]
    assert resubmitted["fal_request_id"] == request_id
    # The video is stored once, by the webhook or by the reconciler when its check found fal's
    # result first; every other delivery logs "Result for a finished job" (or nothing when it
    # lost the race to the transition).
    messages = [line["message"] for line in stored]
    assert [*messages, *(line["message"] for line in reconciled)].count("Video stored") == 1
    # (A duplicate that reaches storage finds the readable key already holding this job's video.)
    assert set(messages) <= {
        "Video stored",
        "Result for a finished job",
        "The readable key is taken",
    }
    assert {line["fal_request_id"] for line in stored} == {request_id}
    # Lines that should carry the ids but do not: any line anywhere that names the job, its
    # object or its fal request in another field (a summary line carrying the last job's ids
    # would be one).
    for function, lines in logs.items():
        for line in lines:
            if any(marker in json.dumps(line) for marker in (job_id, key, request_id)):
                assert line.get("job_id") == job_id, (function, line)


def test_a_completed_job_is_counted_and_measured_in_the_pipelines_namespace(
    pipeline: Pipeline,
) -> None:
    submit_mark = pipeline.log_mark("SubmitFunction")
    webhook_mark = pipeline.log_mark("WebhookFunction")

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "measured", "duration": "1"}))
    video = pipeline.s3.head_object(Bucket=job["output_bucket"], Key=job["output_key"])

    def completion() -> dict[str, Any] | None:
        for entry in pipeline.metric_entries("WebhookFunction", since=webhook_mark):
            # The line of this job's completion: its video's size, its generation time.
            seconds = _values(entry, "GenerationSeconds")
            if (
                _values(entry, "VideoBytes") == [video["ContentLength"]]
                and len(seconds) == 1
                and abs(seconds[0] - float(job["generation_seconds"])) < 0.001
            ):
                return entry
        return None

    completed = eventually(completion)
    submitted = eventually(
        lambda: next(
            (
                entry
                for entry in pipeline.metric_entries("SubmitFunction", since=submit_mark)
                if "JobsSubmitted" in entry
            ),
            None,
        )
    )

    assert job["status"] == "COMPLETED"
    assert {
        ("VideosCompleted", "Count"),
        ("VideoBytes", "Bytes"),
        ("GenerationSeconds", "Seconds"),
    } <= _metrics(completed)
    assert _values(completed, "VideosCompleted") == [1]
    assert {("JobsSubmitted", "Count"), ("SubmitLatency", "Milliseconds")} <= _metrics(submitted)
    assert sum(_values(submitted, "JobsSubmitted")) >= 1
    assert all(0 < latency < 60_000 for latency in _values(submitted, "SubmitLatency"))
    for entry in (completed, submitted):
        assert _namespaces(entry) == {_template_namespace()}
        assert entry["service"] == "pika-pipeline"


def test_a_rejected_webhook_is_counted_with_its_reason_where_the_alarm_looks(
    pipeline: Pipeline,
) -> None:
    mark = pipeline.log_mark("WebhookFunction")

    status, answer = pipeline.post_webhook(
        f"{pipeline.info.webhook_url}?job_id={'0' * 32}&attempt=a1&token=forged", b"{}"
    )

    assert (status, answer) == (401, {"error": "bad_token"})
    entries: list[dict[str, Any]] = []

    def both_lines() -> bool | None:
        entries[:] = [
            entry
            for entry in pipeline.metric_entries("WebhookFunction", since=mark)
            if "WebhooksRejected" in entry
        ]
        return len(entries) >= 2 or None

    eventually(both_lines)
    by_reason = [entry for entry in entries if _dimensions(entry) == [{"service", "reason"}]]
    totals = [entry for entry in entries if _dimensions(entry) == [{"service"}]]
    assert [entry["reason"] for entry in by_reason] == ["bad_token"]
    assert [_values(entry, "WebhooksRejected") for entry in totals] == [[1]]
    # The alarm watches the total, with the dimensions the line carries.
    alarm = load_template()["Resources"]["WebhookRejectionsAlarm"]["Properties"]
    (total,) = totals
    assert alarm["Namespace"] == _template_namespace()
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"service": total["service"]}
    for entry in entries:
        assert _namespaces(entry) == {_template_namespace()}


def _deliveries(pipeline: Pipeline, job_id: str) -> list[dict[str, Any]]:
    (request,) = pipeline.fal_requests_for(job_id)
    deliveries: list[dict[str, Any]] = request["deliveries"]
    return deliveries


def _template_namespace() -> str:
    namespace: str = load_template()["Globals"]["Function"]["Environment"]["Variables"][
        "POWERTOOLS_METRICS_NAMESPACE"
    ]
    return namespace


def _directives(entry: dict[str, Any]) -> list[dict[str, Any]]:
    directives: list[dict[str, Any]] = entry["_aws"]["CloudWatchMetrics"]
    return directives


def _namespaces(entry: dict[str, Any]) -> set[str]:
    return {directive["Namespace"] for directive in _directives(entry)}


def _dimensions(entry: dict[str, Any]) -> list[set[str]]:
    return [set(dimensions) for d in _directives(entry) for dimensions in d["Dimensions"]]


def _metrics(entry: dict[str, Any]) -> set[tuple[str, str]]:
    """The metrics an EMF line declares, with their units."""
    return {(m["Name"], m["Unit"]) for d in _directives(entry) for m in d["Metrics"]}


def _values(entry: dict[str, Any], name: str) -> list[float]:
    value = entry.get(name, [])
    return list(value) if isinstance(value, list) else [value]
