"""Which uploaded object a queue message names: EventBridge and plain S3 notification bodies
(and the pipeline's own completion events, which name none: they nudge dispatch).

Not Powertools' S3EventBridgeNotificationEvent and S3Event: the first URL-decodes EventBridge's
literal keys (``a+b.jpg`` becomes ``a b.jpg``), the second decodes only the first record's key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from pika_pipeline.errors import MalformedMessage
from pika_pipeline.jobs.events import SOURCE as PIPELINE_SOURCE
from pika_pipeline.submit.input_objects import s3_version_id


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    size: int | None
    etag: str | None
    version_id: str | None
    sequencer: str | None

    @property
    def version(self) -> str:
        """What tells two uploads of the same key apart: the version id when the bucket is
        versioned, else the sequencer (which orders PUTs of one key), else the ETag."""
        return self.s3_version_id or self.sequencer or self.etag or ""

    @property
    def s3_version_id(self) -> str | None:
        """The S3 version id to read, when the bucket is versioned; None otherwise. Kept apart
        from ``version``: an unversioned upload is told apart by its sequencer or ETag, which
        S3 does not accept as a VersionId."""
        return s3_version_id(self.version_id)

    @classmethod
    def of_job(cls, item: Mapping[str, Any]) -> Upload:
        """The upload a job was made from, as its record names it (for a resubmit)."""
        version_id = item.get("source_version_id")
        return cls(
            bucket=str(item["source_bucket"]),
            key=str(item["source_key"]),
            size=None,
            etag=None,
            version_id=str(version_id) if version_id else None,
            # Without a version id, the recorded identity is the sequencer or ETag it came from.
            sequencer=None if version_id else str(item.get("source_version") or "") or None,
        )


def decode_notification_key(raw: str) -> str:
    """S3 notifications URL-encode keys with ``+`` for spaces; EventBridge events do not."""
    return unquote_plus(raw)


def uploads_from_message(body: str) -> list[Upload]:
    """The uploads named by one SQS message body; ``[]`` for S3's test event."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedMessage(f"message body is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise MalformedMessage("message body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    if message.get("source") == PIPELINE_SOURCE:
        # The pipeline's own Video Completed / Video Failed: a job ended and freed its fal slot.
        # Not an upload: a nudge for the dispatch that follows every batch.
        return []
    if message.get("source") == "aws.s3" and "detail" in message:
        return [_from_eventbridge(message)]
    if isinstance(message.get("Records"), list):
        return [_from_s3_record(record) for record in message["Records"]]
    raise MalformedMessage("message is neither an EventBridge S3 event nor an S3 notification")


def _from_eventbridge(event: dict[str, Any]) -> Upload:
    if event.get("detail-type") != "Object Created":
        raise MalformedMessage(f"unexpected EventBridge detail-type {event.get('detail-type')!r}")
    try:
        detail = event["detail"]
        obj = detail["object"]
        return Upload(
            bucket=_text(detail["bucket"]["name"]),
            key=_text(obj["key"]),
            size=_size(obj.get("size")),
            etag=obj.get("etag") or obj.get("eTag"),
            version_id=obj.get("version-id"),
            sequencer=obj.get("sequencer"),
        )
    except (KeyError, TypeError) as exc:
        raise MalformedMessage(f"EventBridge event lacks {exc}") from exc


def _from_s3_record(record: dict[str, Any]) -> Upload:
    try:
        if not str(record["eventName"]).startswith("ObjectCreated:"):
            raise MalformedMessage(f"unexpected S3 event {record['eventName']!r}")
        s3 = record["s3"]
        obj = s3["object"]
        return Upload(
            bucket=_text(s3["bucket"]["name"]),
            key=decode_notification_key(_text(obj["key"])),
            size=_size(obj.get("size")),
            etag=obj.get("eTag"),
            version_id=obj.get("versionId"),
            sequencer=obj.get("sequencer"),
        )
    except (KeyError, TypeError) as exc:
        raise MalformedMessage(f"S3 notification record lacks {exc}") from exc


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedMessage(f"expected a non-empty string, got {value!r}")
    return value


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedMessage(f"object size is not an integer: {value!r}")
    return value
