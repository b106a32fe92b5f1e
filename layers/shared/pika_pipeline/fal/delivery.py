"""The body fal POSTs to the webhook when a request finishes (OK or ERROR).

Parsed by hand into dataclasses, not with pydantic: this sits on the webhook's cold-start path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pika_pipeline.fal.errors import describe_detail
from pika_pipeline.jobs.error_codes import ErrorCode


class MalformedDelivery(ValueError):
    """A body that is not a fal webhook delivery."""


@dataclass(frozen=True)
class FalVideo:
    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None

    @classmethod
    def from_document(cls, document: object) -> FalVideo:
        if not isinstance(document, dict):
            raise MalformedDelivery("the video is not an object")
        url = document.get("url")
        if not isinstance(url, str) or not url:
            raise MalformedDelivery("the video has no url")
        size = document.get("file_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise MalformedDelivery(f"the video's file_size is not a size: {size!r}")
        return cls(
            url=url,
            content_type=_optional_text(document, "content_type"),
            file_name=_optional_text(document, "file_name"),
            file_size=size,
        )


@dataclass(frozen=True)
class FalDelivery:
    request_id: str
    status: Literal["OK", "ERROR"]
    gateway_request_id: str | None = None
    payload: dict[str, Any] | None = None
    error: str | None = None
    payload_error: str | None = None

    @classmethod
    def from_json(cls, body: bytes | str) -> FalDelivery:
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedDelivery(f"the body is not JSON: {exc}") from None
        return cls.from_document(document)

    @classmethod
    def from_document(cls, document: object) -> FalDelivery:
        if not isinstance(document, dict):
            raise MalformedDelivery("the body is not a JSON object")
        request_id = document.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise MalformedDelivery("the body has no request_id")
        status = document.get("status")
        if status not in ("OK", "ERROR"):
            raise MalformedDelivery(f"unknown status {status!r}")
        payload = document.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise MalformedDelivery("the payload is not an object")
        return cls(
            request_id=request_id,
            status=status,
            gateway_request_id=_optional_text(document, "gateway_request_id"),
            payload=payload,
            error=_optional_text(document, "error"),
            payload_error=_optional_text(document, "payload_error"),
        )

    def video(self) -> FalVideo | None:
        """The finished video of an OK delivery (Pika's payload is ``{"video": File}``)."""
        if self.status != "OK" or not self.payload:
            return None
        try:
            return FalVideo.from_document(self.payload.get("video"))
        except MalformedDelivery:
            return None  # recorded as a failure: fal said OK but sent no usable video

    def failure(self) -> tuple[ErrorCode, str]:
        """The error code and message a failed delivery ends the job with."""
        if self.payload_error:
            return ErrorCode.FAL_PAYLOAD_ERROR, self.payload_error
        detail = (self.payload or {}).get("detail")
        if isinstance(detail, list):
            return ErrorCode.FAL_VALIDATION, describe_detail(detail)
        if detail:
            return ErrorCode.FAL_ERROR, str(detail)
        if self.status == "OK":
            return ErrorCode.FAL_ERROR, "fal reported success but sent no video"
        return ErrorCode.FAL_ERROR, self.error or "fal reported an error without a message"


def _optional_text(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise MalformedDelivery(f"{name} is not text: {value!r}")
    return value
