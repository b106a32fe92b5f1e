"""Each failure a user or the outside world can cause, as the code a job record ends with."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    MISSING_PROMPT = "missing_prompt"
    PROMPT_TOO_LONG = "prompt_too_long"
    INVALID_RESOLUTION = "invalid_resolution"
    INVALID_DURATION = "invalid_duration"
    INVALID_SEED = "invalid_seed"
    INVALID_PRIORITY = "invalid_priority"
    INVALID_CORRELATION_ID = "invalid_correlation_id"
    EMPTY_OBJECT = "empty_object"
    IMAGE_TOO_LARGE = "image_too_large"
    UNSUPPORTED_IMAGE_TYPE = "unsupported_image_type"
    OBJECT_NOT_FOUND = "object_not_found"
    OUTSIDE_INPUT_PREFIX = "outside_input_prefix"
    CALLBACK_NOT_ALLOWED = "callback_not_allowed"
    FAL_VALIDATION = "fal_validation"
    FAL_AUTH = "fal_auth"
    FAL_UNAVAILABLE = "fal_unavailable"
    FAL_ERROR = "fal_error"
    FAL_PAYLOAD_ERROR = "fal_payload_error"
    FAL_DEADLINE = "fal_deadline"
    CANCELLED = "cancelled"
    VIDEO_REJECTED = "video_rejected"
    VIDEO_TOO_LARGE = "video_too_large"
    VIDEO_NOT_MP4 = "video_not_mp4"
    VIDEO_HOST_NOT_ALLOWED = "video_host_not_allowed"
    VIDEO_UNAVAILABLE = "video_unavailable"
    RECONCILE_FAILED = "reconcile_failed"
