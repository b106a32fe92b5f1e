"""The Standard Webhooks message for a completion event: its id, type and JSON body.

The envelope is the spec's: ``type``, ``timestamp`` (when the event happened), ``data`` (the
event's detail, so correlation id and batch come along whenever the detail carries them, plus a
presigned download URL for a completed video). The body stays under 20 KB.

The ``webhook-id`` derives from (job, final status) for a video event and from (batch, summary
number) for a batch summary: the reconciler publishes a job's event again until the notifier has
it (jobs/event_outbox.py), and a summary again after a crash, each a new EventBridge event that
receivers must see as the same message.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pika_pipeline.jobs.events import BATCH_COMPLETED, COMPLETED, FAILED, SOURCE

# EventBridge detail type -> webhook event type (NotifyRule's pattern lists the same three).
EVENT_TYPES = {
    COMPLETED: "video.completed",
    FAILED: "video.failed",
    BATCH_COMPLETED: "batch.completed",
}
MAX_BODY_BYTES = 20 * 1024
_JOB_ID = re.compile(r"[0-9a-f]{1,64}")
_STATUS = re.compile(r"[A-Z]{1,16}")
_TRUNCATED_MESSAGE_CHARS = 1000


class NotAnEvent(ValueError):
    """A queue message that is not a pipeline completion event (it is dropped, and logged)."""


@dataclass(frozen=True)
class WebhookMessage:
    msg_id: str  # the same for every attempt and destination (see message_id)
    type: str
    body: bytes
    callback_url: str | None


def webhook_message(
    event: Mapping[str, Any], *, presign: Callable[[str, str], str]
) -> WebhookMessage:
    """``presign(bucket, key)`` gives the video's download URL."""
    if event.get("source") != SOURCE or event.get("detail-type") not in EVENT_TYPES:
        raise NotAnEvent(f"not a completion event: {event.get('detail-type')!r}")
    detail = event.get("detail")
    if not isinstance(detail, dict) or not event.get("id"):
        raise NotAnEvent("the event has no id or detail")
    event_type = EVENT_TYPES[str(event["detail-type"])]
    data = {key: value for key, value in detail.items() if key != "callback_url"}
    video = detail.get("video")
    if event_type == "video.completed" and isinstance(video, dict) and video.get("key"):
        data["download_url"] = presign(str(video["bucket"]), str(video["key"]))
    envelope = {"type": event_type, "timestamp": event.get("time"), "data": data}
    callback = detail.get("callback_url")
    return WebhookMessage(
        msg_id=message_id(event_type, event_id=str(event["id"]), detail=detail),
        type=event_type,
        body=_fitted(envelope),
        callback_url=str(callback) if callback else None,
    )


def message_id(event_type: str, *, event_id: str, detail: Mapping[str, Any]) -> str:
    """The ``webhook-id``: ``msg_<job id>_<status>`` for a video event (``msg_<job id>_completed``:
    a job ends once, unless a late result completes a FAILED one, which is news), or
    ``msg_batch_<hash of the batch>_<summary>`` for a batch summary. The batch name is the
    uploader's text, and the spec wants an id no user controls (no ``.`` at least, as the id is
    signed dot-joined): its hash keeps the id in ``[a-z0-9_]`` whatever the name. Job ids are the
    pipeline's own hex digests; an event without one (not the pipeline's) gets
    ``msg_<event id>``."""
    if event_type == "batch.completed" and detail.get("batch") and detail.get("summary"):
        digest = hashlib.sha256(str(detail["batch"]).encode()).hexdigest()[:32]
        return f"msg_batch_{digest}_{int(detail['summary'])}"
    job_id, status = str(detail.get("job_id") or ""), str(detail.get("status") or "")
    if event_type != "batch.completed" and _JOB_ID.fullmatch(job_id) and _STATUS.fullmatch(status):
        return f"msg_{job_id}_{status.lower()}"
    return f"msg_{event_id}"


def _fitted(envelope: dict[str, Any]) -> bytes:
    """The body, under MAX_BODY_BYTES: the free-text fields give way first (prompt, then the
    error message), and ``data.truncated`` says so."""
    body = _encode(envelope)
    if len(body) <= MAX_BODY_BYTES:
        return body
    data = dict(envelope["data"])
    data.pop("prompt", None)
    data.pop("negative_prompt", None)
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        data["error"] = {**error, "message": error["message"][:_TRUNCATED_MESSAGE_CHARS]}
    data["truncated"] = True
    body = _encode({**envelope, "data": data})
    if len(body) > MAX_BODY_BYTES:
        # Nothing the pipeline writes grows this large; keep the identifying fields only.
        keep = (
            "job_id",
            "status",
            "source",
            "video",
            "error",
            "download_url",
            "correlation_id",
            "batch",
        )
        slim = {key: data[key] for key in keep if key in data} | {"truncated": True}
        body = _encode({**envelope, "data": slim})
    return body


def _encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
