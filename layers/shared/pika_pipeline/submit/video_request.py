"""What the uploader asked for, read from the object's user metadata and validated once.

Validated through the pydantic model alone, each field's failure mapped to the error code the
job ends with: the model is the one statement of the rules (the Pika schema's fields, lengths and
ranges, the deployment's duration bounds given as validation context), and reading the metadata
only decodes and picks values. Keeping pydantic rather than hand checks keeps that one
statement; its cost stays off cold start, as SubmitService imports this module with the first
upload it reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pika_pipeline.errors import UploadRejected
from pika_pipeline.fal.pika import RESOLUTIONS, Resolution
from pika_pipeline.jobs.error_codes import ErrorCode

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
MAX_PROMPT_LENGTH = 1500
MAX_SEED = 2**32 - 1
# The validation context's keys: the deployment's duration bounds (MinDuration, MaxDuration).
_MIN_DURATION = "min_duration"
_MAX_DURATION = "max_duration"


class VideoRequest(BaseModel):
    """The Pika v2.1 arguments this pipeline sends, minus the image URL.

    Fields in the order their problems are reported: the first one found names the error code.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_LENGTH)
    duration: int = Field(ge=1)
    resolution: Resolution
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_LENGTH)

    @field_validator("prompt", "negative_prompt", mode="before")
    @classmethod
    def _trim(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("duration", "seed", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        # Plain ASCII digits only: int() would also take "1_0" and full-width digits.
        if not _WHOLE_NUMBER.fullmatch(value.strip()):
            raise PydanticCustomError("whole_number", "must be a whole number")
        return int(value.strip())

    @field_validator("duration")
    @classmethod
    def _within_the_deployments_bounds(cls, value: int, info: ValidationInfo) -> int:
        bounds = info.context or {}
        if _MIN_DURATION in bounds and not bounds[_MIN_DURATION] <= value <= bounds[_MAX_DURATION]:
            raise PydanticCustomError("out_of_bounds", "outside the configured bounds")
        return value

    def fal_arguments(self, image_url: str) -> dict[str, object]:
        arguments: dict[str, object] = {
            "image_url": image_url,
            "prompt": self.prompt,
            "resolution": self.resolution,
            "duration": self.duration,
        }
        if self.negative_prompt:
            arguments["negative_prompt"] = self.negative_prompt
        if self.seed is not None:
            arguments["seed"] = self.seed
        return arguments


def decode_metadata_value(value: str) -> str:
    """S3 returns non-ASCII metadata RFC 2047-encoded (``=?UTF-8?B?...?=`` or ``?Q?``)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeDecodeError):
        return value


def encode_metadata_value(value: str) -> str:
    """The inverse, for uploaders: S3 metadata must be ASCII, so encode anything else."""
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(maxlinelen=10_000)


def video_request_from_metadata(
    metadata: Mapping[str, str],
    *,
    default_resolution: Resolution,
    default_duration: int,
    min_duration: int,
    max_duration: int,
) -> VideoRequest:
    """Builds the request, or raises UploadRejected with the code of the first problem found."""
    values = {key.lower(): decode_metadata_value(value) for key, value in metadata.items()}
    # A blank optional value is as good as none: the default applies.
    fields: dict[str, Any] = {
        "prompt": values.get("prompt", ""),
        "duration": _given(values.get("duration")) or default_duration,
        "resolution": (_given(values.get("resolution")) or default_resolution).lower(),
        "seed": _given(values.get("seed")),
        "negative_prompt": values.get("negative-prompt") or values.get("negative_prompt") or None,
    }
    try:
        return VideoRequest.model_validate(
            fields, context={_MIN_DURATION: min_duration, _MAX_DURATION: max_duration}
        )
    except ValidationError as exc:
        raise _rejection(
            exc.errors()[0], values, min_duration=min_duration, max_duration=max_duration
        ) from None


PRIORITIES = ("high", "normal", "low")


def priority_from_metadata(metadata: Mapping[str, str]) -> str:
    """The upload's ``priority`` (its dispatch lane): high, normal (the default) or low."""
    values = {key.lower(): value for key, value in metadata.items()}
    given = _given(decode_metadata_value(values.get("priority", "")))
    if given is None:
        return "normal"
    if given.lower() not in PRIORITIES:
        raise UploadRejected(
            ErrorCode.INVALID_PRIORITY,
            f"priority must be {', '.join(PRIORITIES)}, got {given!r}.",
        )
    return given.lower()


def _given(raw: str | None) -> str | None:
    return raw.strip() or None if raw is not None else None


def _rejection(
    error: ErrorDetails, values: Mapping[str, str], *, min_duration: int, max_duration: int
) -> UploadRejected:
    """The error code and message of the field that failed validation."""
    field, kind, value = error["loc"][0], error["type"], error["input"]
    given = values.get(str(field), value)  # as the uploader wrote it
    match field:
        case "prompt" if kind == "string_too_long":
            return UploadRejected(
                ErrorCode.PROMPT_TOO_LONG,
                f"The prompt is {len(value)} characters; at most {MAX_PROMPT_LENGTH} are allowed.",
            )
        case "prompt":
            return UploadRejected(
                ErrorCode.MISSING_PROMPT,
                "The object has no prompt: upload it with metadata 'prompt' (x-amz-meta-prompt).",
            )
        case "negative_prompt":
            return UploadRejected(
                ErrorCode.PROMPT_TOO_LONG,
                f"The negative prompt is {len(value)} characters; at most {MAX_PROMPT_LENGTH} "
                "are allowed.",
            )
        case "duration" if kind == "whole_number":
            return UploadRejected(
                ErrorCode.INVALID_DURATION,
                f"duration must be a whole number, got {given!r}.",
            )
        case "duration":
            return UploadRejected(
                ErrorCode.INVALID_DURATION,
                f"duration must be between {min_duration} and {max_duration} seconds, got {value}.",
            )
        case "resolution":
            return UploadRejected(
                ErrorCode.INVALID_RESOLUTION,
                f"resolution must be {' or '.join(RESOLUTIONS)}, got {given!r}.",
            )
        case "seed" if kind == "whole_number":
            return UploadRejected(
                ErrorCode.INVALID_SEED,
                f"seed must be a whole number, got {given!r}.",
            )
        case "seed":
            return UploadRejected(
                ErrorCode.INVALID_SEED, f"seed must be between 0 and {MAX_SEED}, got {value}."
            )
    raise AssertionError(f"VideoRequest.{field} has no error code")
