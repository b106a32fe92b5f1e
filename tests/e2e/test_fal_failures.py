"""When fal cannot make the video, the job says so with fal's own reason."""

from __future__ import annotations

from tests.support.pipeline import Pipeline


def test_a_content_policy_error_from_fal_fails_the_job_with_fals_message(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(outcome=["validation_error"])

    job_id = pipeline.upload({"prompt": "something fal will refuse", "duration": "1"})
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_validation"
    assert "flagged by the content checker" in job["error_message"]
    assert "output_key" not in job


def test_an_internal_error_at_fal_fails_the_job_with_fals_message(pipeline: Pipeline) -> None:
    pipeline.fal_faults(outcome=["error"])

    job = pipeline.wait_for_job(pipeline.upload({"prompt": "waves", "duration": "1"}))

    assert (job["status"], job["error_code"]) == ("FAILED", "fal_error")
    assert job["error_message"] == "Internal server error"


def test_an_unserializable_payload_from_fal_fails_the_job(pipeline: Pipeline) -> None:
    pipeline.fal_faults(outcome=["payload_error"])

    job_id = pipeline.upload({"prompt": "waves", "duration": "1"})
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_payload_error"


def test_fal_refusing_the_input_at_submit_fails_the_job_without_retrying(
    pipeline: Pipeline,
) -> None:
    pipeline.fal_faults(submit=[422])

    job_id = pipeline.upload({"prompt": "waves", "duration": "1"})
    job = pipeline.wait_for_job(job_id)
    pipeline.wait_for_queue_drained()  # its message was deleted: it cannot come back

    assert job["status"] == "FAILED"
    assert job["error_code"] == "fal_validation"
    assert job["error_message"] == "image_url: Unsupported image"  # fal's detail, made readable
    assert "request_id" not in job
    assert "attempts" not in job
    # One submit, refused; none accepted, none retried, nothing left for the dead-letter queue.
    assert [s["status"] for s in pipeline.refused_fal_submits_for(job_id)] == [422]
    assert pipeline.fal_requests_for(job_id) == []
    assert pipeline.submit_log_messages_for(job_id) == ["fal refused the request"]
    assert not pipeline.dead_lettered(job["source_key"])


def test_a_duplicate_webhook_delivery_stores_one_video(pipeline: Pipeline) -> None:
    pipeline.fal_faults(delivery=["duplicate"])

    job_id = pipeline.upload({"prompt": "waves", "duration": "1"})
    job = pipeline.wait_for_job(job_id)

    assert job["status"] == "COMPLETED"
    deliveries = pipeline.answered_deliveries(job_id, 2)  # the duplicate may still be on its way
    assert [d["status"] for d in deliveries] == [200, 200]
    assert pipeline.video_objects(job_id) == [job["output_key"]]
