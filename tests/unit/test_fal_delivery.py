"""The body fal POSTs to the webhook: the finished video, or why there is none."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pika_pipeline.fal.delivery import FalDelivery, FalVideo, MalformedDelivery
from pika_pipeline.jobs.error_codes import ErrorCode

VIDEO = {
    "url": "https://v3.fal.media/files/example/output.mp4",
    "content_type": "video/mp4",
    "file_name": "output.mp4",
    "file_size": 1048576,
}


def delivery(**fields: Any) -> FalDelivery:
    body = {"request_id": "req-1", "gateway_request_id": "req-1", **fields}
    return FalDelivery.from_json(json.dumps(body))


def test_an_ok_delivery_yields_its_video() -> None:
    video = delivery(status="OK", payload={"video": VIDEO}, error=None).video()

    assert video == FalVideo(
        url="https://v3.fal.media/files/example/output.mp4",
        content_type="video/mp4",
        file_name="output.mp4",
        file_size=1048576,
    )


def test_a_video_with_only_a_url_is_enough() -> None:
    video = delivery(status="OK", payload={"video": {"url": "https://fal.media/v.mp4"}}).video()

    assert video is not None
    assert (video.url, video.file_size, video.content_type) == (
        "https://fal.media/v.mp4",
        None,
        None,
    )


def test_unknown_fields_are_ignored() -> None:
    video = delivery(
        status="OK",
        payload={"video": {**VIDEO, "width": 1280}, "seed": 7},
        metrics={"inference_time": 41.2},
    ).video()

    assert video is not None
    assert video.url == VIDEO["url"]


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "OK", "payload": {}},
        {"status": "OK", "payload": None},
        {"status": "OK"},
        {"status": "OK", "payload": {"images": [VIDEO]}},
        {"status": "ERROR", "payload": {"video": VIDEO}},  # an ERROR never counts as a video
        {"status": "ERROR", "payload": {"detail": "boom"}},
    ],
)
def test_deliveries_without_a_finished_video_yield_none(fields: dict[str, Any]) -> None:
    assert delivery(**fields).video() is None


def test_an_ok_delivery_with_a_null_video_yields_none() -> None:
    assert delivery(status="OK", payload={"video": None}).video() is None


def test_an_ok_delivery_without_video_fails_with_a_clear_message() -> None:
    code, message = delivery(status="OK", payload={}).failure()

    assert code == ErrorCode.FAL_ERROR
    assert "no video" in message


def test_a_422_validation_error_becomes_a_readable_fal_validation_failure() -> None:
    failed = delivery(
        status="ERROR",
        error="Invalid status code: 422",
        payload={
            "detail": [
                {
                    "loc": ["body", "prompt"],
                    "msg": "field required",
                    "type": "value_error.missing",
                },
                {
                    "loc": ["body", "image_url"],
                    "msg": "Could not download the image",
                    "type": "image_load_error",
                },
            ]
        },
    )

    code, message = failed.failure()

    assert code == ErrorCode.FAL_VALIDATION
    assert message == "prompt: field required; image_url: Could not download the image"


def test_a_validation_error_without_location_says_input() -> None:
    failed = delivery(status="ERROR", payload={"detail": [{"loc": ["body"], "msg": "bad"}]})

    assert failed.failure() == (ErrorCode.FAL_VALIDATION, "input: bad")


def test_a_validation_error_with_nested_location_joins_it_with_dots() -> None:
    failed = delivery(
        status="ERROR",
        payload={"detail": [{"loc": ["body", "loras", 0, "scale"], "msg": "too big"}]},
    )

    assert failed.failure() == (ErrorCode.FAL_VALIDATION, "loras.0.scale: too big")


def test_an_empty_validation_list_still_has_a_message() -> None:
    code, message = delivery(status="ERROR", payload={"detail": []}).failure()

    assert code == ErrorCode.FAL_VALIDATION
    assert message


def test_a_string_detail_becomes_a_fal_error_with_that_message() -> None:
    failed = delivery(
        status="ERROR", error="Internal error", payload={"detail": "GPU out of memory"}
    )

    assert failed.failure() == (ErrorCode.FAL_ERROR, "GPU out of memory")


def test_an_error_without_detail_uses_the_error_field() -> None:
    failed = delivery(status="ERROR", error="Request timed out", payload=None)

    assert failed.failure() == (ErrorCode.FAL_ERROR, "Request timed out")


def test_an_error_without_any_message_still_has_one() -> None:
    code, message = delivery(status="ERROR").failure()

    assert code == ErrorCode.FAL_ERROR
    assert message


def test_a_payload_error_is_reported_as_such() -> None:
    failed = delivery(
        status="ERROR",
        error="Error while serializing the payload",
        payload=None,
        payload_error="Response payload is too large",
    )

    assert failed.failure() == (ErrorCode.FAL_PAYLOAD_ERROR, "Response payload is too large")


def test_a_payload_error_wins_over_a_detail() -> None:
    failed = delivery(status="OK", payload={"detail": "x"}, payload_error="could not serialize")

    assert failed.failure() == (ErrorCode.FAL_PAYLOAD_ERROR, "could not serialize")


@pytest.mark.parametrize(
    "body",
    [
        {"status": "OK"},  # no request id
        {"request_id": "", "status": "OK"},
        {"request_id": "r", "status": "DONE"},
        {"request_id": "r"},
        {"request_id": "r", "status": "OK", "payload": "not an object"},
    ],
)
def test_bodies_that_are_not_fal_deliveries_do_not_validate(body: dict[str, Any]) -> None:
    with pytest.raises(MalformedDelivery):
        FalDelivery.from_json(json.dumps(body))


@pytest.mark.parametrize(
    "video",
    [{"url": ""}, {"content_type": "video/mp4"}, {"url": "https://v", "file_size": -1}],
)
def test_a_video_without_a_usable_url_or_size_fails_the_job(video: dict[str, Any]) -> None:
    unusable = delivery(status="OK", payload={"video": video})

    assert unusable.video() is None
    assert unusable.failure()[0] == "fal_error"
