"""The chaos run's judgement of unstorable videos: a problem only when a job got nothing but
videos that can never be stored and did not end FAILED with their code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest

from local.chaos_checks import ChaosReport, Evidence, unstorable_videos_fail_within_the_deadline

if TYPE_CHECKING:
    from local.chaos import ChaosRun


TIMES = {"submitted_at": "2026-12-05T10:00:00+00:00", "updated_at": "2026-12-05T10:00:09+00:00"}


def _request(job_id: str, *, media: str, made_video: bool) -> dict[str, Any]:
    return {
        "webhook_url": f"http://127.0.0.1:1/?job_id={job_id}&attempt=1&token=t",
        "outcome": "ok",
        "media": media,
        "made_video": made_video,
    }


def _judge(requests: list[dict[str, Any]], job: dict[str, Any]) -> list[str]:
    evidence = Evidence(
        run=cast("ChaosRun", None),  # not read by this check
        job_ids=["j1"],
        jobs={"j1": {**TIMES, **job}},
        fal={"requests": requests, "rejected_submits": []},
        deadline_seconds=600,
    )
    report = ChaosReport()
    unstorable_videos_fail_within_the_deadline(evidence, report)
    return report.problems


def test_a_job_whose_only_video_cannot_be_stored_must_fail_with_that_code() -> None:
    requests = [_request("j1", media="not_mp4", made_video=True)]

    assert _judge(requests, {"status": "FAILED", "error_code": "video_not_mp4"}) == []
    assert _judge(requests, {"status": "COMPLETED"}) == [
        "job j1 got only videos that cannot be stored (video_not_mp4) but is COMPLETED None"
    ]


@pytest.mark.parametrize("media", ["not_mp4", "foreign_host"])
def test_a_request_that_made_no_video_leaves_the_job_to_fals_own_error(media: str) -> None:
    # fal could not fetch the image (a 422), so no video was ever made: fal's error ends the job.
    requests = [_request("j1", media=media, made_video=False)]

    assert _judge(requests, {"status": "FAILED", "error_code": "fal_validation"}) == []
