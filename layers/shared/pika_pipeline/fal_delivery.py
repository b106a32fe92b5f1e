"""The body fal POSTs to the webhook when a request finishes (OK or ERROR)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pika_pipeline.fal_errors import describe_detail
from pika_pipeline.jobs import ErrorCode


class FalVideo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str = Field(min_length=1)
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = Field(default=None, ge=0)


class FalDelivery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str = Field(min_length=1)
    gateway_request_id: str | None = None
    status: Literal["OK", "ERROR"]
    payload: dict[str, Any] | None = None
    error: str | None = None
    payload_error: str | None = None

    def video(self) -> FalVideo | None:
        """The finished video of an OK delivery (Pika's payload is ``{"video": File}``)."""
        if self.status != "OK" or not self.payload:
            return None
        try:
            return FalVideo.model_validate(self.payload.get("video"))
        except ValidationError:
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
