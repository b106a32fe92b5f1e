"""Every upload becomes exactly one paid fal job: duplicates never submit twice."""

from __future__ import annotations

import time

from tests.support.pipeline import Pipeline, eventbridge_body


def test_a_redelivered_upload_event_does_not_submit_again(pipeline: Pipeline) -> None:
    job_id = pipeline.upload({"prompt": "a lighthouse at dusk", "duration": "1"})
    first = pipeline.wait_for_job(job_id)
    assert first["status"] == "COMPLETED"

    # S3 and EventBridge deliver at least once: the same object version arrives again.
    body = eventbridge_body(first["source_bucket"], first["source_key"], first["source_version"])
    mark = pipeline.log_mark("SubmitFunction")
    pipeline.send_raw_message(body)
    pipeline.send_raw_message(body)
    pipeline.wait_for_duplicates(job_id, since=mark, count=2)

    assert len(pipeline.fal_requests_for(job_id)) == 1
    after = pipeline.job(job_id)
    assert after is not None
    assert after["status"] == "COMPLETED"
    assert after["request_ids"] == first["request_ids"]


def test_a_new_upload_of_the_same_key_is_a_new_job(pipeline: Pipeline) -> None:
    key = "uploads/same-key/photo.jpg"
    first = pipeline.upload({"prompt": "first take", "duration": "1"}, key=key)
    second = pipeline.upload({"prompt": "second take", "duration": "1"}, key=key)

    assert first != second
    pipeline.wait_for_job(first)
    pipeline.wait_for_job(second)
    # read once both are final: the newer upload's video may have moved the older one's aside
    jobs = [pipeline.job(first) or {}, pipeline.job(second) or {}]

    assert [job["status"] for job in jobs] == ["COMPLETED", "COMPLETED"]
    assert [job["prompt"] for job in jobs] == ["first take", "second take"]
    assert jobs[0]["output_key"] != jobs[1]["output_key"]
    assert [pipeline.video_objects(job["job_id"]) for job in jobs] == [
        [jobs[0]["output_key"]],
        [jobs[1]["output_key"]],
    ]


def test_a_submitted_job_whose_claim_ran_out_is_never_submitted_again(pipeline: Pipeline) -> None:
    pipeline.fal_faults(delivery=["drop"])  # no webhook: the job stays SUBMITTED
    job_id = pipeline.upload({"prompt": "submitted long ago", "duration": "1"})
    submitted = pipeline.wait_for_status(job_id, "SUBMITTED")
    # Hours later: the claim the submit took has long run out; fal has the request.
    pipeline.table.update_item(
        Key={"job_id": job_id},
        UpdateExpression="SET claim_expires_at = :past",
        ExpressionAttributeValues={":past": int(time.time()) - 3600},
    )

    body = eventbridge_body(
        submitted["source_bucket"], submitted["source_key"], submitted["source_version"]
    )
    mark = pipeline.log_mark("SubmitFunction")
    pipeline.send_raw_message(body)
    pipeline.wait_for_duplicates(job_id, since=mark)

    assert len(pipeline.fal_requests_for(job_id)) == 1
    after = pipeline.job(job_id)
    assert after is not None
    assert after["status"] == "SUBMITTED"
    assert after["request_id"] == submitted["request_id"]
